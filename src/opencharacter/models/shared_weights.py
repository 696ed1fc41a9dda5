"""One copy of a base model's weights per process, however many local models are built on it.

An evaluation loads the base model, the fine-tuned student (an adapter over that same base) and often
a judge that is the base again; the recipe and the demo compare several students over one base. Loading
each as its own model held one full copy of the base per role (the demo's evaluation phase: base, tuned
and judge side by side). Here the base is loaded once per (weights, device, dtype); every adapter is
loaded into it under its own name (peft keeps several LoRA adapters beside one base), and a generation
picks its adapter — or none, for the base itself — while it holds the weights' lock.

Outputs are unchanged: a LoRA layer with its adapter disabled computes exactly the base layer, and an
active adapter computes what the adapter loaded alone computes. The price is that models sharing weights
take turns (one lock): on a CPU the cores were shared anyway; on a GPU, give a model its own process
(each evaluation phase already runs in one) when two must run at the same time.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opencharacter.errors import MissingDependencyError
from opencharacter.hashing import content_hash
from opencharacter.models.loading import adapter_base, load_model_and_tokenizer, resolve_model_path


class SharedWeights:
    """A loaded base model, the adapters loaded into it, and the lock generations hold."""

    def __init__(self, weights: str, device: str, dtype: Any) -> None:
        self.model, _ = load_model_and_tokenizer(weights, device, dtype)
        self.lock = threading.Lock()
        self._adapters: dict[str, str] = {}  # adapter directory → its name inside the model

    def adapter_name(self, directory: str) -> str:
        """Load the adapter at `directory` into the shared model once; its name for `active`."""
        key = str(Path(directory).resolve())
        with self.lock:
            if key not in self._adapters:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise MissingDependencyError("peft", "train") from None
                name = "a" + content_hash("adapter", key)[:12]
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(directory, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, directory, adapter_name=name).eval()
                self._adapters[key] = name
            return self._adapters[key]

    @contextlib.contextmanager
    def active(self, adapter: str | None) -> Iterator[Any]:
        """Hold the lock with `adapter` switched on (None: the base, every adapter off); yields the model."""
        with self.lock:
            if not self._adapters:
                yield self.model
            elif adapter is None:
                with self.model.disable_adapter():
                    yield self.model
            else:
                self.model.set_adapter(adapter)
                yield self.model


_LOADED: weakref.WeakValueDictionary[tuple[str, str, str], SharedWeights] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


def shared_weights(model: str, device: str, dtype: Any) -> tuple[SharedWeights, str | None, Any]:
    """(the shared base weights, the adapter's name or None, the tokenizer) for a model spec.

    The weights live as long as some local model holds them (a weak table), so a phase that drops its
    models gives the memory back as before.
    """
    from transformers import AutoTokenizer

    base = adapter_base(model)
    weights = resolve_model_path(base or model)
    key = (weights, device, str(dtype))
    with _LOADING:
        shared = _LOADED.get(key)
        if shared is None:
            shared = SharedWeights(weights, device, dtype)
            _LOADED[key] = shared
    adapter = shared.adapter_name(model) if base is not None else None
    tokenizer = AutoTokenizer.from_pretrained(model if base else weights)
    return shared, adapter, tokenizer
