"""Backends by name, through the one registry (`opencharacter.registry.BACKENDS`).

Built-ins are registered there by import path, so heavy modules load only when chosen. A plug-in
backend is one `register_backend("name", factory)` call; nothing else branches on names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from opencharacter.backends.base import Backend, Capabilities
from opencharacter.registry import BACKENDS

if TYPE_CHECKING:
    from opencharacter.config import BackendConfig


def register_backend(name: str, factory: str | Callable[[BackendConfig], Backend]) -> None:
    BACKENDS.register(name, factory)


def available_backends() -> list[str]:
    return BACKENDS.names()


def _factory(name: str) -> Callable[[BackendConfig], Backend]:
    return BACKENDS.load(name)


def build_backend(config: BackendConfig) -> Backend:
    return _factory(config.backend)(config)


def backend_decoding(config: BackendConfig) -> str | None:
    """The backend's `decoding` tag without building it (an evaluation records it beside the model)."""
    return getattr(_factory(config.backend), "decoding", None)


__all__ = ["Backend", "Capabilities", "available_backends", "backend_decoding", "build_backend", "register_backend"]
