"""`opencharacter serve`: any backend behind an OpenAI-compatible API, safe to leave running.

Useful to share one loaded local model between tools (chat, eval, SillyTavern, another pipeline),
and it is the same server the test suite talks to. By default it listens on 127.0.0.1 only; to
listen beyond this machine it needs a key (`--auth-key-env`), and it never answers a web page from
another site unless that origin is listed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic_core import PydanticUndefined

from opencharacter.backends import build_backend
from opencharacter.cli import options as opt
from opencharacter.config import build
from opencharacter.serve.settings import ServeConfig, auth_key, check_exposure

_FIELDS = ServeConfig.model_fields


def _help(name: str) -> str:
    """The field's description, with its default (the flags default to None: "not given")."""
    field = _FIELDS[name]
    default = field.default
    if name == "max_body":
        default = f"{default // 2**20}MiB"
    shown = f" Default: {default}." if default not in (None, PydanticUndefined) else ""
    return (field.description or "") + shown


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated flags and comma-separated values alike."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (beyond 127.0.0.1 needs a key).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    auth_key_env: Annotated[
        str | None, typer.Option("--auth-key-env", help=_help("auth_key_env"), rich_help_panel="Access")
    ] = None,
    allowed_origins: Annotated[
        list[str] | None, typer.Option("--allowed-origins", help=_help("allowed_origins"), rich_help_panel="Access")
    ] = None,
    allowed_hosts: Annotated[
        list[str] | None, typer.Option("--allowed-hosts", help=_help("allowed_hosts"), rich_help_panel="Access")
    ] = None,
    served_model_name: Annotated[
        list[str] | None,
        typer.Option(
            "--served-model-name",
            help="Name(s) clients may ask for in `model` (default: the model's id); others get 404.",
            rich_help_panel="Access",
        ),
    ] = None,
    max_body: Annotated[
        str | None, typer.Option("--max-body", help=_help("max_body"), rich_help_panel="Limits")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", help=_help("max_messages"), rich_help_panel="Limits")
    ] = None,
    max_characters: Annotated[
        int | None, typer.Option("--max-characters", help=_help("max_characters"), rich_help_panel="Limits")
    ] = None,
    max_active: Annotated[
        int | None, typer.Option("--max-active", help=_help("max_active"), rich_help_panel="Limits")
    ] = None,
    max_waiting: Annotated[
        int | None, typer.Option("--max-waiting", help=_help("max_waiting"), rich_help_panel="Limits")
    ] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    config: opt.ConfigFile = None,
) -> None:
    """Serve a model at http://HOST:PORT/v1/chat/completions (OpenAI-compatible, streaming, JSON schema)."""
    given: dict[str, Any] = {
        "auth_key_env": auth_key_env,
        "allowed_origins": _split(allowed_origins),
        "allowed_hosts": _split(allowed_hosts),
        "max_body": max_body,
        "max_messages": max_messages,
        "max_characters": max_characters,
        "max_active": max_active,
        "max_waiting": max_waiting,
    }
    settings: ServeConfig = build(ServeConfig, {k: v for k, v in given.items() if v is not None}, "flags")
    key = auth_key(settings)
    check_exposure(host, key)  # before loading anything: exit 2 at once
    overrides = opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    _, _, backend_config = opt.load_config(config, overrides)
    served = build_backend(backend_config)
    names = _split(served_model_name) or [served.model_id]
    accepted = list(dict.fromkeys([*names, served.model_id, backend_config.model]))
    access = "clients must send the key" if key else "no key: this machine only"
    answers = "streams tokens" if served.capabilities.stream else "answers whole"
    typer.echo(f"serving {names[0]} at http://{host}:{port}/v1 ({access}; {answers}; Ctrl-C to stop)", err=True)
    from opencharacter.serve.server import run_server  # aiohttp's server only when serving

    active = settings.max_active or backend_config.concurrency
    run_server(served, host, port, settings, key=key, listed=names, accepted=accepted, max_active=active)
