"""Options every model-calling command shares, and how they merge with a YAML config.

Flags default to None so we can tell "not given" from "given": defaults < YAML < flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opencharacter.config import BackendConfig, PipelineConfig, build, load_yaml, merge

Backend = Annotated[
    str | None,
    typer.Option("--backend", help="transformers (default), openai, vllm.", rich_help_panel="Model"),
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="Hub id, local directory, or 'embedded' (default).", rich_help_panel="Model"),
]
BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.", rich_help_panel="Model")
]
ApiKeyEnv = Annotated[
    str | None,
    typer.Option("--api-key-env", help="Environment variable holding the API key.", rich_help_panel="Model"),
]
Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", help="Requests in flight (default 64).", rich_help_panel="Model"),
]
BatchSize = Annotated[
    int | None,
    typer.Option("--batch-size", help="Local backends: batch size (default 16).", rich_help_panel="Model"),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config (same shape as for `run`).", rich_help_panel="Model"),
]
Temperature = Annotated[float | None, typer.Option("--temperature", help="Sampling temperature.")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Max generated tokens per call.")]
# metavar="" on flags: typer 0.29 shows every bool option's type (`--quiet -q <bool>`), which reads as if
# it took a value; flags take none. Older typer versions showed nothing there, as this does.
FLAG = ""
RetryFailed = Annotated[
    bool, typer.Option("--retry-failed", help="Try again the items recorded as failed.", metavar=FLAG)
]
SkipInvalid = Annotated[
    bool, typer.Option("--skip-invalid", help="Skip malformed input records and report them.", metavar=FLAG)
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", metavar=FLAG)]


def backend_overrides(
    backend: str | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    concurrency: int | None,
    batch_size: int | None,
) -> dict[str, Any]:
    given = {
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "batch_size": batch_size,
    }
    return {key: value for key, value in given.items() if value is not None}


def sampling_overrides(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    given = {"temperature": temperature, "max_tokens": max_tokens}
    return {key: value for key, value in given.items() if value is not None}


def config_data(config: Path | None) -> dict[str, Any]:
    return load_yaml(config) if config is not None else {}


def backend_config(data: dict[str, Any], overrides: dict[str, Any], source: str) -> BackendConfig:
    return build(BackendConfig, merge(data.get("backend", {}), overrides), f"{source}: backend")


def load_config(config: Path | None, overrides: dict[str, Any]) -> tuple[dict[str, Any], str, BackendConfig]:
    """The YAML (or nothing), the name errors cite for it, and the backend it and the flags describe."""
    data = config_data(config)
    source = str(config or "flags")
    return data, source, backend_config(data, overrides, source)


def section(data: dict[str, Any], name: str, sampling: dict[str, Any]) -> dict[str, Any]:
    """A stage section of the YAML with sampling flags merged into it."""
    base = dict(data.get(name, {}))
    if sampling:
        base["sampling"] = merge(base.get("sampling", {}), sampling)
    return base


def pipeline_config(path: Path, overrides: dict[str, Any]) -> PipelineConfig:
    return build(PipelineConfig, merge(load_yaml(path), overrides), str(path))
