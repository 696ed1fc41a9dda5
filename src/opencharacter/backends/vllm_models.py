"""What vLLM must load for a model spec: the base model, plus a LoRA adapter when the spec is one.

vLLM cannot load a peft adapter directory as its model; it loads the base model with LoRA enabled
and each request names the adapter. This resolves an adapter written by `opencharacter train` (its
base is recorded in opencharacter.json, so 'embedded' resolves on any machine) or any peft adapter
(adapter_config.json's base_model_name_or_path), and the LoRA rank vLLM must be started with.
The same resolution gives the `vllm serve` command for the OpenAI-compatible path (`serve_command`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from opencharacter.errors import ConfigError
from opencharacter.models.loading import adapter_base, resolve_model_path

# The values vLLM accepts for --max-lora-rank (vllm/config/lora.py, `MaxLoRARanks`; 1 is newer).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VLLMModel:
    base: str
    """What vLLM loads: a hub id or a local model directory."""
    adapter: str | None = None
    """An absolute LoRA adapter directory, sent with every request; None for a plain model."""
    adapter_name: str = ""
    """The adapter's name in vLLM (and the model name clients use with `vllm serve`)."""
    max_lora_rank: int = 0
    """The smallest --max-lora-rank vLLM accepts that holds the adapter's rank."""


def lora_rank(adapter_dir: str | Path) -> int:
    """The largest rank in a peft adapter_config.json (r, or a larger per-module rank_pattern)."""
    path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"{path}: vLLM serves LoRA adapters only, this one is {config['peft_type']}")
    ranks = [int(config.get("r", 8)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def vllm_max_lora_rank(rank: int) -> int:
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ConfigError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def resolve_vllm_model(model: str) -> VLLMModel:
    """'embedded', a hub id, a model directory (also a full fine-tune), or a LoRA adapter directory."""
    base = adapter_base(model)
    if base is None:
        return VLLMModel(base=resolve_model_path(model))
    adapter = Path(model).resolve()
    return VLLMModel(
        base=resolve_model_path(base),
        adapter=str(adapter),
        adapter_name=adapter.name,
        max_lora_rank=vllm_max_lora_rank(lora_rank(adapter)),
    )


def serve_command(model: str, name: str | None = None, port: int = 8000) -> list[str]:
    """The `vllm serve` argv that serves `model` (an adapter through --lora-modules) under `name`.

    Clients then use `--backend openai --base-url http://HOST:PORT/v1 --model NAME`.
    """
    resolved = resolve_vllm_model(model)
    command = ["vllm", "serve", resolved.base, "--port", str(port)]
    if resolved.adapter is None:
        return [*command, "--served-model-name", name] if name else command
    lora_name = name or resolved.adapter_name
    return [
        *command,
        "--enable-lora",
        "--lora-modules",
        f"{lora_name}={resolved.adapter}",
        "--max-lora-rank",
        str(resolved.max_lora_rank),
    ]
