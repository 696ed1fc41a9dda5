"""Every LLM call of every stage goes through `Engine.generate`.

A call's cache key hashes everything that shaped it — prompt template version, rendered messages,
model, sampling parameters, schema and attempt number — so a rerun replays finished calls from the
store instead of paying for them again, and a changed prompt or parameter makes new calls.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from opencharacter.backends.base import Backend
from opencharacter.engine.keys import request_json
from opencharacter.errors import BackendError, ParseError
from opencharacter.hashing import HASH_VERSION, canonical_json
from opencharacter.records import ChatRequest, Completion
from opencharacter.store import RunStore

T = TypeVar("T")

_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0


@dataclass
class EngineStats:
    new_calls: int = 0
    cached_calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def tokens_per_second(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.completion_tokens / elapsed if elapsed > 0 else 0.0


def with_call_seed(request: ChatRequest, key: str) -> ChatRequest:
    """The request as sent: seeded from its cache key (which includes the attempt number).

    A rerun sends the same seed as the first run, so backends that honour seeds (the local ones,
    vLLM, most OpenAI-compatible servers) reproduce it; a retry after invalid output gets a new
    seed, so it is a fresh draw. A seed the user configured is mixed in, not replaced.
    """
    if not request.sampling.seeded:  # a reference's exact request (eval --protocol personagym) has none
        return request
    # = content_hash("call-seed", key, seed, length=8), spelled out: this runs on every call.
    configured = "null" if request.sampling.seed is None else str(int(request.sampling.seed))
    text = f'["{HASH_VERSION}","call-seed","{key}",{configured}]'
    seed = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 2**31
    return request.model_copy(update={"sampling": request.sampling.model_copy(update={"seed": seed})})


class Engine:
    def __init__(
        self,
        backend: Backend,
        store: RunStore,
        *,
        concurrency: int = 64,
        max_retries: int = 6,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.backend, self.store = backend, store
        self.concurrency, self.max_retries = concurrency, max_retries
        self.stats = EngineStats()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._sleep = sleep

    @functools.cached_property
    def _identity_json(self) -> str:
        # A local backend's identity fingerprints its model files: stat them once per engine, not per call.
        return canonical_json(self.backend.cache_identity)

    def cache_key(self, request: ChatRequest, prompt_id: str, attempt: int, variant: int = 0) -> str:
        """`content_hash("call", prompt_id, identity, request.model_dump(mode="json"), attempt)`, built
        from cached pieces: the same key, byte for byte (old stores still replay), at a fraction of
        the CPU (the schema and sampling are serialised once, not on every call).

        `variant` tells apart calls that are otherwise identical on purpose: candidate c of
        `synthesis.candidates` is the same request sampled again, so it needs its own key (and, the
        seed being derived from the key, its own seed). It is appended only when non-zero, so
        variant 0 keeps exactly the key calls had before variants existed.
        """
        tail = f",{canonical_json(variant)}" if variant else ""
        text = (
            f'["{HASH_VERSION}","call",{canonical_json(prompt_id)},{self._identity_json},'
            f"{request_json(request)},{canonical_json(attempt)}{tail}]"
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    async def generate(self, request: ChatRequest, *, prompt_id: str, attempt: int = 0, variant: int = 0) -> Completion:
        """One completion, from the store if this exact call was made before."""
        key = self.cache_key(request, prompt_id, attempt, variant)
        cached = self.store.get_call(key)
        if cached is not None:
            self.stats.cached_calls += 1
            return cached
        return await self.call(request, key, prompt_id)

    async def call(self, request: ChatRequest, key: str, prompt_id: str) -> Completion:
        """What a cache miss does: call the backend (seeded from `key`, retried), store the answer.

        The one override point for an engine that must not call (batch files record the request
        here instead), so every way of running a stage shares the attempt loop above it.
        """
        async with self._semaphore:
            completion = await self._call_with_retries(with_call_seed(request, key))
        self.store.put_call(key, prompt_id, self.backend.model_id, completion)
        self.stats.new_calls += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        return completion

    async def generate_parsed(
        self,
        request: ChatRequest,
        parse: Callable[[Completion], T],
        *,
        prompt_id: str,
        max_attempts: int,
        first_attempt: int = 0,
        variant: int = 0,
    ) -> tuple[T, int]:
        """Generate until `parse` accepts the output; returns the value and the attempts used.

        Each attempt has its own cache key, so a retry after invalid output makes a fresh call,
        while a rerun replays the same sequence of attempts.
        """
        last: ParseError | None = None
        for attempt in range(first_attempt, first_attempt + max_attempts):
            completion = await self.generate(request, prompt_id=prompt_id, attempt=attempt, variant=variant)
            try:
                return parse(completion), attempt - first_attempt + 1
            except ParseError as exc:
                last = exc
        assert last is not None  # max_attempts >= 1 is validated in the config
        raise ParseError(f"{last.message} (after {max_attempts} attempts)", raw=last.raw)

    async def _call_with_retries(self, request: ChatRequest) -> Completion:
        for retry in range(self.max_retries + 1):
            try:
                return await self.backend.complete(request)
            except BackendError as exc:
                if not exc.retryable or retry == self.max_retries:
                    raise
                self.stats.retries += 1
                await self._sleep(self.backoff(retry, exc.retry_after))
        raise AssertionError("unreachable")

    @staticmethod
    def backoff(retry: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is honoured as a floor."""
        delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**retry))
        return max(delay, retry_after) if retry_after is not None else delay
