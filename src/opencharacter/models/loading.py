"""Resolve and load a causal LM from any model spec: 'embedded', a hub id, a model dir, or an adapter dir.

Adapter directories written by `opencharacter train` record their base model in
`opencharacter.json` (so 'embedded' resolves on any machine); plain peft adapter directories name it
in `adapter_config.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError, MissingDependencyError
from opencharacter.hashing import content_hash
from opencharacter.models.embedded import EMBEDDED_NAME, embedded_model_dir, quiet_transformers
from opencharacter.records import ChatRequest

MODEL_META = "opencharacter.json"
# What `opencharacter train` writes beside the weights as reports; they don't change what the model says.
_REPORT_FILES = {MODEL_META, "loss_history.json", "split.json", "README.md", "loss.png"}


def resolve_model_path(model: str) -> str:
    """'embedded' → the converted checkpoint; a directory stays; anything else is a hub id the user named."""
    if model == EMBEDDED_NAME:
        return str(embedded_model_dir())
    return model


def model_meta(model: str) -> dict[str, Any]:
    """What `opencharacter train` recorded next to a model (base model, system-prompt version, …)."""
    path = Path(model) / MODEL_META
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def directory_fingerprint(model: str) -> str | None:
    """A short hash of a local model directory's files (name, size, modification time), else None.

    Part of the call cache's key, so a model retrained in place is never answered from the old
    model's cache. Sizes and times rather than contents: hashing gigabytes of weights at every start
    would cost more than it saves, and a copied directory only costs a cache miss, never a wrong hit.
    """
    directory = Path(model)
    if not directory.is_dir():
        return None
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name not in _REPORT_FILES)
    parts: list[object] = [(p.name, stat.st_size, stat.st_mtime_ns) for p in files for stat in [p.stat()]]
    base = adapter_base(model)
    if base is not None:
        parts.append(directory_fingerprint(base) or base)
    return content_hash("model-files", parts, length=12)


def adapter_base(model: str) -> str | None:
    """The base model of an adapter directory, or None when `model` is not one."""
    directory = Path(model)
    if not (directory / "adapter_config.json").is_file():
        return None
    meta = model_meta(model)
    if meta.get("base_model"):
        return str(meta["base_model"])
    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{directory}/adapter_config.json names no base model")
    return str(base)


def chat_prompt_ids(tokenizer: Any, request: ChatRequest) -> list[int]:
    """The prompt's token ids: the chat template as text, then tokenised without adding special tokens
    (the template already has them; a second BOS changes what the model sees)."""
    messages = [m.model_dump() for m in request.messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def load_model_and_tokenizer(model: str, device: str, dtype: Any = None) -> tuple[Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "local") from None
    quiet_transformers()
    base = adapter_base(model)
    weights = resolve_model_path(base or model)
    if base is None and Path(model).is_dir() and not (Path(model) / "config.json").is_file():
        raise ConfigError(f"{model} is neither a model directory (config.json) nor an adapter (adapter_config.json)")
    tokenizer = AutoTokenizer.from_pretrained(model if base else weights)
    loaded = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype or torch.float32)
    if base is not None:
        try:
            from peft import PeftModel
        except ImportError:
            raise MissingDependencyError("peft", "train") from None
        loaded = PeftModel.from_pretrained(loaded, model)
    return loaded.to(device).eval(), tokenizer
