"""Scripted answers for tests and benchmarks: a real socket with deterministic answers, fixed
latency and injected faults (500s, 429 with Retry-After, hangs, malformed JSON, cut bodies).

`serve_in_thread(ScriptedResponder(...))` is the OpenAI-compatible server the suite talks to; it
goes through the same request validation and guard as `opencharacter serve`.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from opencharacter.backends.fake import fake_value
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.records import ChatRequest, Completion
from opencharacter.serve.api import completion_body, parse_request


def request_from_payload(payload: dict[str, Any]) -> ChatRequest:
    """The ChatRequest an (already validated) OpenAI request body describes."""
    return parse_request(payload).to_chat_request()


@dataclass(frozen=True)
class Truncated:
    """An answer whose body stops half-way: the server promises `Content-Length` and hangs up."""

    body: bytes


@dataclass
class Faults:
    """Fault injection by request number (1-based, counted over the server's life)."""

    server_errors: int = 0
    """The first N requests get HTTP 500."""
    rate_limits: int = 0
    """The next N requests get HTTP 429 with `Retry-After: retry_after`."""
    retry_after: float = 0.05
    malformed: int = 0
    """The next N requests get a 200 whose body is not JSON."""
    hangs: int = 0
    """The next N requests never answer within `hang_seconds` (client timeouts)."""
    hang_seconds: float = 30.0
    random_rate: float = 0.0
    """Besides the above, this fraction of all requests, drawn at random, gets one of `random_kinds`."""
    random_kinds: tuple[str, ...] = ("error", "hang", "truncated", "malformed", "invalid")
    random_seed: int = 0


class ScriptedResponder:
    """Deterministic answers after a fixed latency, with the faults above.

    `slots`: serve at most this many requests at once and answer 429 beyond that (without
    Retry-After unless `slot_retry_after` is set), as a rate-limited server or a full vLLM queue does.
    """

    def __init__(
        self,
        latency: float = 0.0,
        faults: Faults | None = None,
        slots: int | None = None,
        slot_retry_after: float | None = None,
    ) -> None:
        self.latency, self.faults = latency, faults or Faults()
        self.slots, self.slot_retry_after = slots, slot_retry_after
        self.requests = 0
        self.rejected = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._random = random.Random(self.faults.random_seed)

    async def __call__(self, payload: dict[str, Any]) -> web.StreamResponse | Completion | Truncated:
        with self._lock:
            self.requests += 1
            number = self.requests
            full = self.slots is not None and self.in_flight >= self.slots
            if full:
                self.rejected += 1
            else:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if full:
            headers = {"Retry-After": str(self.slot_retry_after)} if self.slot_retry_after is not None else None
            return web.json_response({"error": {"message": "server busy"}}, status=429, headers=headers)
        try:
            return await self._answer(payload, number)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, payload: dict[str, Any], number: int) -> web.StreamResponse | Completion | Truncated:
        f = self.faults
        if f.random_rate and self._random.random() < f.random_rate:
            kind = self._random.choice(f.random_kinds)
            if kind == "error":
                return web.json_response({"error": {"message": "injected server error"}}, status=500)
            if kind == "hang":
                await asyncio.sleep(f.hang_seconds)
            elif kind == "truncated":
                return Truncated(json.dumps(completion_body(self._completion(payload), "m")).encode())
            elif kind == "malformed":
                return web.Response(text='{"choices": [', content_type="application/json")
            elif kind == "invalid":
                return Completion(text='{"name": ""}' if payload.get("response_format") else "")
        limit = f.server_errors
        if number <= limit:
            return web.json_response({"error": {"message": "injected server error"}}, status=500)
        if number <= (limit := limit + f.rate_limits):
            return web.json_response(
                {"error": {"message": "rate limited"}},
                status=429,
                headers={"Retry-After": str(f.retry_after)},
            )
        if number <= (limit := limit + f.malformed):
            return web.Response(text='{"choices": [', content_type="application/json")
        if number <= limit + f.hangs:
            await asyncio.sleep(f.hang_seconds)
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._completion(payload)

    def _completion(self, payload: dict[str, Any]) -> Completion:
        request = request_from_payload(payload)
        if request.response_schema is not None:
            key = content_hash(canonical_json(payload["messages"]))
            text = canonical_json(fake_value(request.response_schema, key, request.response_schema))
        else:
            text = f"echo: {request.messages[-1].content[:200]}"
        return Completion(
            text=text,
            prompt_tokens=len(canonical_json(payload["messages"])) // 4,
            completion_tokens=len(text) // 4,
        )
