"""The one seam every model backend implements: `async complete(request) -> Completion`.

Backends do one call and report failures as `BackendError(retryable=...)`; retries, concurrency,
caching and progress belong to the engine, so every backend gets them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from opencharacter.backends.model_loading import directory_fingerprint
from opencharacter.records import ChatRequest, Completion

if TYPE_CHECKING:
    from opencharacter.config import BackendConfig


@dataclass(frozen=True)
class Capabilities:
    structured_output: bool = True
    """Honours `ChatRequest.response_schema` (server-side response_format or constrained decoding)."""
    local: bool = False
    """Runs in this process; the engine keeps enough requests in flight to fill its batches."""


class Backend(ABC):
    capabilities = Capabilities()

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def model_id(self) -> str:
        """What records store as the model that made them."""
        return self.config.model

    @cached_property
    def cache_identity(self) -> str:
        """What the call cache keys on: the model id, plus a fingerprint of the files of a local
        model directory, so that retraining a model in place invalidates its cached answers."""
        fingerprint = directory_fingerprint(self.config.model) if self.capabilities.local else None
        return f"{self.model_id}@{fingerprint}" if fingerprint else self.model_id

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion. Raise BackendError (retryable or not) on failure."""

    async def aclose(self) -> None:
        """Release sessions, threads or GPU memory."""
