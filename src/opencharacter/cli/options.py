"""Options every model-calling command shares, and how they merge with a YAML config.

Flags default to None so we can tell "not given" from "given": defaults < YAML < flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from opencharacter.config import (
    BackendConfig,
    Config,
    ExecutorConfig,
    ModelPrice,
    PipelineConfig,
    build,
    check_top_level,
    load_yaml,
    merge,
)

Backend = Annotated[
    str | None,
    typer.Option("--backend", help="transformers (default), openai, vllm.", rich_help_panel="Model"),
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="Hub id, local directory, or 'embedded' (default).", rich_help_panel="Model"),
]
BaseUrl = Annotated[
    list[str] | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible server URL; repeat it (or separate by commas) for a fleet of servers.",
        rich_help_panel="Model",
    ),
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
ExecutorKind = Annotated[
    str | None,
    typer.Option("--executor", help="Where stage work runs: local (default) or ray.", rich_help_panel="Executor"),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster address (default: a local Ray).", rich_help_panel="Executor"),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Ray: parallel tasks (default: the cluster's CPUs).", rich_help_panel="Executor"),
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
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Count the items and calls still to make; call no model, write nothing.", metavar=FLAG
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", metavar=FLAG)]


def backend_overrides(
    backend: str | None,
    model: str | None,
    base_url: list[str] | str | None,
    api_key_env: str | None,
    concurrency: int | None,
    batch_size: int | None,
) -> dict[str, Any]:
    if isinstance(base_url, list):  # --base-url repeated; BackendConfig also splits commas
        base_url = ",".join(base_url) or None
    given = {
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "batch_size": batch_size,
    }
    return {key: value for key, value in given.items() if value is not None}


def executor_overrides(kind: str | None, address: str | None, workers: int | None) -> dict[str, Any]:
    given = {"kind": kind, "address": address, "workers": workers}
    return {key: value for key, value in given.items() if value is not None}


def executor_config(data: dict[str, Any], overrides: dict[str, Any], source: str) -> ExecutorConfig:
    return build(ExecutorConfig, merge(data.get("executor") or {}, overrides), f"{source}: executor")


class _PricesSection(Config):
    prices: dict[str, ModelPrice] = Field(default_factory=dict)


def prices(data: dict[str, Any], source: str) -> dict[str, ModelPrice]:
    """The YAML's `prices:` (US$ per million tokens per model), validated like every section."""
    return build(_PricesSection, {"prices": data.get("prices") or {}}, source).prices


def sampling_overrides(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    given = {"temperature": temperature, "max_tokens": max_tokens}
    return {key: value for key, value in given.items() if value is not None}


def config_data(config: Path | None) -> dict[str, Any]:
    return check_top_level(load_yaml(config), str(config)) if config is not None else {}


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
