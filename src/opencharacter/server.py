"""A small OpenAI-compatible server (`POST /v1/chat/completions`) on 127.0.0.1.

It has two jobs: `opencharacter serve` puts any backend (e.g. the embedded model) behind the
OpenAI API, and tests/benchmarks get a real socket with deterministic answers, fixed latency and
injected faults (500s, 429 with Retry-After, hangs, malformed JSON).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from opencharacter.backends.fake import fake_value
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling

Responder = Callable[[dict[str, Any]], Awaitable[web.StreamResponse | Completion]]


def request_from_payload(payload: dict[str, Any]) -> ChatRequest:
    schema = None
    response_format = payload.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema")
    sampling = {k: payload[k] for k in ("temperature", "top_p", "max_tokens", "seed") if payload.get(k) is not None}
    return ChatRequest(
        messages=[ChatMessage(**m) for m in payload["messages"]],
        sampling=Sampling(**sampling),
        response_schema=schema,
    )


_ids = itertools.count(1)


def completion_body(completion: Completion, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }


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


class ScriptedResponder:
    """Deterministic answers after a fixed latency, with the faults above."""

    def __init__(self, latency: float = 0.0, faults: Faults | None = None) -> None:
        self.latency, self.faults = latency, faults or Faults()
        self.requests = 0
        self._lock = threading.Lock()

    async def __call__(self, payload: dict[str, Any]) -> web.StreamResponse | Completion:
        with self._lock:
            self.requests += 1
            number = self.requests
        f = self.faults
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
            if not isinstance(payload.get("messages"), list):
                raise ValueError("'messages' must be a list")
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": {"message": f"bad request: {exc}"}}, status=400)
        answer = await responder(payload)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(completion_body(answer, payload.get("model") or model_name))

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model_name, "object": "model"}]})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


@contextmanager
def serve_in_thread(responder: Responder, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the server on its own event loop in a daemon thread; yields the base URL (…/v1).

    Stops when the block exits; the thread is a daemon, so a crashed test never leaves it behind.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(build_app(responder), access_log=None)
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
    "build_app",
    "completion_body",
    "request_from_payload",
    "run_server",
    "serve_in_thread",
]
