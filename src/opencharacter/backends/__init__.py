"""Backend registry. Built-ins are registered here by import path, so heavy modules load only when chosen.

A plug-in backend is one `register_backend("name", factory)` call; nothing else branches on names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from opencharacter.backends.base import Backend, Capabilities

if TYPE_CHECKING:
    from opencharacter.config import BackendConfig

_REGISTRY: dict[str, str | Callable[[BackendConfig], Backend]] = {
    "transformers": "opencharacter.backends.transformers_local:TransformersBackend",
    "openai": "opencharacter.backends.openai_http:OpenAIBackend",
    "vllm": "opencharacter.backends.vllm_offline:VLLMBackend",
    "fake": "opencharacter.backends.fake:FakeBackend",
}


def register_backend(name: str, factory: str | Callable[[BackendConfig], Backend]) -> None:
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return list(_REGISTRY)


def _factory(name: str) -> Callable[[BackendConfig], Backend]:
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    return factory


def build_backend(config: BackendConfig) -> Backend:
    return _factory(config.backend)(config)


def backend_decoding(config: BackendConfig) -> str | None:
    """The backend's `decoding` tag without building it (an evaluation records it beside the model)."""
    return getattr(_factory(config.backend), "decoding", None)


__all__ = ["Backend", "Capabilities", "available_backends", "backend_decoding", "build_backend", "register_backend"]
