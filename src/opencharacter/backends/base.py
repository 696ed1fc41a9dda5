"""The one seam every model backend implements: `async complete(request) -> Completion`.

Backends do one call and report failures as `BackendError(retryable=...)`; retries, concurrency,
caching and progress belong to the engine, so every backend gets them the same way.

Declared capabilities say what else a backend can do; callers read them instead of a backend's
name. `stream` is one: `Backend.stream(request)` yields the answer's text as it is generated
(`serve`'s server-sent events, `chat`'s live output). Every backend has `stream`; one without the
capability yields its whole answer as one event, so callers need no second code path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from opencharacter.models.loading import directory_fingerprint
from opencharacter.records import ChatRequest, Completion

if TYPE_CHECKING:
    from opencharacter.config import BackendConfig


@dataclass(frozen=True)
class Capabilities:
    structured_output: bool = True
    """Honours `ChatRequest.response_schema` (server-side response_format or constrained decoding)."""
    local: bool = False
    """Runs in this process; the engine keeps enough requests in flight to fill its batches."""
    stream: bool = False
    """`stream()` yields text as the model makes it (else the whole answer as one event)."""


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer: new text, and on the last event the whole completion."""

    text: str = ""
    """Text made since the previous event (may be empty on the last one)."""
    final: Completion | None = None
    """Set on the last event only: the answer as `complete` returns it (finish reason, token counts)."""


@dataclass(frozen=True)
class TokenBudget:
    """What a request takes of the model's context, for callers that cap `max_tokens` (`serve`)."""

    prompt_tokens: int
    context_window: int


@dataclass(frozen=True)
class EndpointStats:
    """What one server of an HTTP backend did in this process, for the end-of-run summary."""

    url: str
    served: int
    """Calls it answered successfully."""
    failures: int
    """Failed tries: refused or broken connections, timeouts, 5xx, malformed bodies."""
    rate_limited: int = 0
    """429/503 answers absorbed by lowering the concurrency (not counted as failures)."""
    hedges: int = 0
    """Extra copies sent to it: hedges of slow calls and quick re-sends of failed ones."""
    concurrency: int = 0
    """Its adaptive concurrency limit at the end."""
    out: bool = False
    """Taken out of the fleet (cooling down) at the end."""
    structured_output: str = "json_schema"
    """The structured-output form it accepts: json_schema, json_object or prompt."""

    def line(self) -> str:
        parts = [f"{self.served} served", f"{self.failures} failed"]
        if self.rate_limited:
            parts.append(f"{self.rate_limited} rate-limited (absorbed)")
        if self.hedges:
            parts.append(f"{self.hedges} hedged")
        parts.append(f"concurrency {self.concurrency}")
        if self.structured_output != "json_schema":
            parts.append(f"structured output via {self.structured_output}")
        if self.out:
            parts.append("out (cooling down)")
        return f"{self.url}: " + ", ".join(parts)


class Backend(ABC):
    capabilities = Capabilities()
    decoding: ClassVar[str | None] = None
    """How the backend decodes beyond the request's own parameters, when that ever changed (see
    `transformers_local.DECODING`): part of the cache identity, and recorded by runs and evaluations
    so that answers decoded two ways never mix in one directory."""

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
        identity = f"{self.model_id}@{fingerprint}" if fingerprint else self.model_id
        return f"{identity}+{self.decoding}" if self.decoding else identity

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion. Raise BackendError (retryable or not) on failure."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The answer as it is generated; the last event carries the completion.

        Closing the iterator early (a client that hung up) stops the work where the backend can.
        This default, for backends without the `stream` capability, yields the whole answer once.
        """
        completion = await self.complete(request)
        yield StreamEvent(completion.text, completion)

    def token_budget(self, request: ChatRequest) -> TokenBudget | None:
        """The request's prompt length and the model's context window, where this process knows
        them (a local model); None where a server elsewhere enforces its own limit.

        May tokenise (and load the model on first use): call it off the event loop.
        """
        return None

    def endpoint_stats(self) -> list[EndpointStats]:
        """Per-server counts for the summary; empty for backends that are not servers."""
        return []

    async def aclose(self) -> None:
        """Release sessions, threads or GPU memory."""
