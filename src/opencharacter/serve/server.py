"""A small OpenAI-compatible server (`POST /v1/chat/completions`) on 127.0.0.1.

It has two jobs: `opencharacter serve` puts any backend (e.g. the embedded model) behind the
OpenAI API, and tests/benchmarks get a real socket with deterministic answers, fixed latency and
injected faults (500s, 429 with Retry-After, hangs, malformed JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from opencharacter.backends.fake import fake_value
from opencharacter.errors import OpenCharacterError
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.records import ChatRequest, Completion
from opencharacter.serve.api import (
    RequestRejected,
    completion_body,
    error_body,
    parse_request,
    stream_events,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Truncated:
    """An answer whose body stops half-way: the server promises `Content-Length` and hangs up."""

    body: bytes


Responder = Callable[[dict[str, Any]], Awaitable[web.StreamResponse | Completion | Truncated]]


def request_from_payload(payload: dict[str, Any]) -> ChatRequest:
    """The ChatRequest an (already validated) OpenAI request body describes."""
    return parse_request(payload).to_chat_request()


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


class BackendResponder:
    """Answers with a real backend (e.g. the embedded transformers model)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def __call__(self, payload: dict[str, Any]) -> Completion:
        return await self.backend.complete(request_from_payload(payload))


def build_app(responder: Responder, model_name: str = "opencharacter") -> web.Application:
    async def chat(http_request: web.Request) -> web.StreamResponse:
        try:
            payload = await http_request.json()
        except ValueError as exc:
            return web.json_response(error_body(f"the body is not JSON: {exc}", "invalid_request_error"), status=400)
        try:
            parsed = parse_request(payload)
            parsed.to_chat_request()  # a message or format we cannot honour is the client's error
        except RequestRejected as exc:
            return web.json_response(exc.body(), status=exc.status)
        try:
            answer = await responder(payload)
        except OpenCharacterError as exc:
            # A backend failure is the server's problem, said in the OpenAI shape; never a traceback.
            log.warning("chat completion failed: %s", exc)
            return web.json_response(error_body(str(exc), "server_error"), status=500)
        if isinstance(answer, Truncated):
            return await _truncated(http_request, answer.body)
        if isinstance(answer, web.StreamResponse):
            return answer
        model = parsed.model or model_name
        if not parsed.stream:
            return web.json_response(completion_body(answer, model))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(http_request)
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        for event in stream_events(answer, model, include_usage):
            await response.write(event)
        await response.write_eof()
        return response

    @web.middleware
    async def no_tracebacks(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body = error_body(exc.reason, "invalid_request_error" if exc.status < 500 else "server_error")
            return web.json_response(body, status=exc.status)
        except Exception as exc:  # the one place a bug may not become a traceback for the client
            log.error("internal error: %s: %s", type(exc).__name__, exc)
            return web.json_response(error_body(f"internal error: {type(exc).__name__}", "server_error"), status=500)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model_name, "object": "model"}]})

    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[no_tracebacks])
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


async def _truncated(http_request: web.Request, body: bytes) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(http_request)
    await response.write(body[: len(body) // 2])
    if http_request.transport is not None:
        http_request.transport.close()
    return response


@contextmanager
def serve_in_thread(responder: Responder, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the server on its own event loop in a daemon thread; yields the base URL (…/v1).

    Stops when the block exits; the thread is a daemon, so a crashed test never leaves it behind.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        # Hung handlers (fault injection) must not hold the shutdown for aiohttp's default 60 s.
        runner = web.AppRunner(build_app(responder), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        state["runner"] = runner
        state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="openai-test-server", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield f"http://{host}:{state['port']}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def run_server(responder: Responder, host: str, port: int, model_name: str) -> None:
    """Serve in the foreground until interrupted (`opencharacter serve`)."""
    web.run_app(build_app(responder, model_name), host=host, port=port, print=None, access_log=None)


__all__ = [
    "BackendResponder",
    "Faults",
    "ScriptedResponder",
    "Truncated",
    "build_app",
    "completion_body",
    "request_from_payload",
    "run_server",
    "serve_in_thread",
]
