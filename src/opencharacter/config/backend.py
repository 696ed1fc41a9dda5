"""Which model answers (`backend:`, also `teacher:`, judges and students) and where stage work runs (`executor:`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from opencharacter.config.base import Config
from opencharacter.errors import ConfigError
from opencharacter.registry import BACKENDS, EXECUTORS, Registry


class BackendConfig(Config):
    backend: str = Field("transformers", description="Model backend: transformers, openai, vllm (or fake).")
    model: str = Field(
        "embedded",
        description="Hub id, local directory, or 'embedded' (the bundled SmolLM2-135M-Instruct).",
    )
    base_url: str | list[str] | None = Field(
        None,
        description=(
            "OpenAI-compatible server URL, e.g. http://localhost:8000/v1; a list (or comma-separated) is a fleet: "
            "each call goes to the least-loaded endpoint."
        ),
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (never the key)."
    )
    api_key_file: str | None = Field(
        None,
        description="File holding the API key, read where the backend runs (each Ray worker reads its own "
        "copy; the key never travels with the job); used when the `api_key_env` variable is not set.",
    )
    concurrency: int = Field(64, ge=1, le=4096, description="Requests in flight at once.")
    timeout: float = Field(300.0, gt=0, description="Per-request timeout in seconds (openai backend).")
    max_retries: int = Field(6, ge=0, le=50, description="Retries of a failed call (5xx, timeouts, bad bodies).")
    requests_per_minute: int | None = Field(
        None, ge=1, description="openai backend: cap on requests sent per minute (hosted APIs; None: no cap)."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="openai backend: cap on tokens per minute, counted as the API does (prompt + max_tokens).",
    )
    adaptive_concurrency: bool = Field(
        True,
        description="openai backend: lower the requests in flight on 429/503 and rising latency, grow back on "
        "success (AIMD), never above `concurrency`.",
    )
    rate_limit_wait: float = Field(
        900.0,
        gt=0,
        description="openai backend: how long one call may keep waiting out 429/503 answers before it counts "
        "as a failed try.",
    )
    hedging: bool = Field(
        True,
        description="openai backend: send a second copy of a call far slower than its peers (first answer wins).",
    )
    batch_size: int = Field(16, ge=1, le=1024, description="Local backends: sequences generated together.")
    device: str = Field("auto", description="Local backends: auto, cpu, cuda, cuda:1, mps.")
    seed: int = Field(0, description="Seed for local sampling.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra backend-specific keyword arguments (e.g. vLLM engine args)."
    )

    def api_key(self) -> str | None:
        """The key: the `api_key_env` variable of this process, else the first line of `api_key_file`."""
        key = os.environ.get(self.api_key_env)
        if key or self.api_key_file is None:
            return key
        path = Path(self.api_key_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip().splitlines()[0].strip() or None
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            problem = getattr(exc, "strerror", None) or "empty or not text"
            raise ConfigError(f"api_key_file {path}: cannot read the API key ({problem})") from None

    @field_validator("base_url", mode="before")
    @classmethod
    def _fleet(cls, value: Any) -> Any:
        """`a,b` and `[a, b]` both mean a fleet; one URL stays a string, as before."""
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list):
            urls = [str(url).strip().rstrip("/") for url in value if str(url).strip()]
            if not urls:
                return None
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"base_url {url!r} must start with http:// or https://")
            if len(set(urls)) != len(urls):
                raise ValueError("base_url lists the same server twice")
            return urls[0] if len(urls) == 1 else urls
        return value

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        return _registered(BACKENDS, value)


class ExecutorConfig(Config):
    """Where stage work runs. Every executor writes the same run directory and files."""

    kind: str = Field(
        "local",
        description="local: asyncio in this process; ray: tasks on a Ray cluster (pip extra `ray`); "
        "or a name given to `opencharacter.executors.register_executor`.",
    )
    address: str | None = Field(
        None, description="Ray: cluster address (default: RAY_ADDRESS, else a local Ray started for the run)."
    )
    workers: int | None = Field(None, ge=1, description="Ray: parallel tasks, one engine each (default: CPUs).")
    gpus_per_worker: float = Field(
        0.0, ge=0, description="Ray: GPUs each worker reserves (1 for a local model per GPU; 0 for an HTTP backend)."
    )

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        return _registered(EXECUTORS, value)


def _registered(registry: Registry, name: str) -> str:
    """The registry's "unknown … did you mean" as a validation error (pydantic adds the field path)."""
    try:
        return registry.check(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
