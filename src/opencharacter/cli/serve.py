"""`opencharacter serve`: any backend behind an OpenAI-compatible API on 127.0.0.1.

Useful to share one loaded local model between tools (chat, eval, another pipeline), and it is the
same server the test suite talks to.
"""

from __future__ import annotations

from typing import Annotated

import typer

from opencharacter.backends import build_backend
from opencharacter.cli import options as opt
from opencharacter.serve.server import BackendResponder, run_server


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    config: opt.ConfigFile = None,
) -> None:
    """Serve a model at http://HOST:PORT/v1/chat/completions (OpenAI-compatible, JSON schema supported)."""
    overrides = opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    _, _, backend_config = opt.load_config(config, overrides)
    served = build_backend(backend_config)
    typer.echo(f"serving {served.model_id} at http://{host}:{port}/v1 (Ctrl-C to stop)", err=True)
    run_server(BackendResponder(served), host, port, served.model_id)
