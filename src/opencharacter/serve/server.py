"""A small OpenAI-compatible server: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

It has two jobs: `opencharacter serve` puts any backend (e.g. the embedded model) behind the
OpenAI API, and tests/benchmarks get a real socket with scripted answers (`serve/scripted.py`).
Both go through the same guard (serve/guard.py: Host, Origin, key, content type), the same request
validation (serve/api.py, run off the event loop) and the same backpressure (serve/admission.py).

A served backend answers a streamed request through `Backend.stream`: each piece of text is sent
as a server-sent event as soon as the backend yields it (tokens as they are decoded, for the local
model), and a client that hangs up stops the generation.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

from aiohttp import web

from opencharacter.backends.base import Backend, StreamEvent
from opencharacter.errors import OpenCharacterError
from opencharacter.records import ChatRequest, Completion
from opencharacter.serve.admission import Admission, Overloaded
from opencharacter.serve.api import (
    ChatCompletionRequest,
    Limits,
    RequestRejected,
    completion_body,
    error_body,
    read_request,
)
from opencharacter.serve.budget import fit_to_context
from opencharacter.serve.guard import Guard, cors_headers
from opencharacter.serve.scripted import Faults, ScriptedResponder, Truncated, request_from_payload
from opencharacter.serve.settings import ServeConfig
from opencharacter.serve.sse import ChunkWriter, whole_answer_pieces

log = logging.getLogger(__name__)

Responder = Callable[[dict[str, Any]], Awaitable[web.StreamResponse | Completion | Truncated]]


class BackendResponder:
    """Answers with a real backend (e.g. the embedded transformers model)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def __call__(self, payload: dict[str, Any]) -> Completion:
        return await self.backend.complete(request_from_payload(payload))


class _ChatRoute:
    def __init__(
        self,
        responder: Responder,
        model_name: str,
        config: ServeConfig,
        model_names: Collection[str] | None,
        admission: Admission | None,
    ) -> None:
        self.responder, self.model_name, self.config = responder, model_name, config
        self.model_names = frozenset(model_names) if model_names is not None else None
        self.admission = admission
        self.limits = Limits(
            max_messages=config.max_messages,
            max_characters=config.max_characters,
            max_json_depth=config.max_json_depth,
        )
        self.backend = responder.backend if isinstance(responder, BackendResponder) else None

    async def __call__(self, http_request: web.Request) -> web.StreamResponse:
        async with AsyncExitStack() as stack:  # the admission counts hold until the answer is sent
            response = await self._handle(http_request, stack)
        return response

    async def _handle(self, http_request: web.Request, stack: AsyncExitStack) -> web.StreamResponse:
        if self.admission is not None:
            try:
                await stack.enter_async_context(self.admission.enter())
            except Overloaded:
                return self._overloaded()
        try:
            payload, parsed, request = await self._read(http_request)
        except RequestRejected as exc:
            return web.json_response(exc.body(), status=exc.status)
        except OpenCharacterError as exc:  # e.g. the local model failed to load for the budget
            return _failed(exc)
        if self.admission is not None:
            await stack.enter_async_context(self.admission.backend_slot())
        model = parsed.model or self.model_name
        if self.backend is not None and parsed.stream:
            return await self._stream(http_request, self.backend.stream(request), model, parsed)
        try:
            answer = await (self.backend.complete(request) if self.backend else self.responder(payload))
        except OpenCharacterError as exc:
            return _failed(exc)
        if isinstance(answer, Truncated):
            return await _truncated(http_request, answer.body)
        if isinstance(answer, web.StreamResponse):
            return answer
        if not parsed.stream:
            return web.json_response(completion_body(answer, model))
        return await self._stream(http_request, _whole(answer), model, parsed)

    async def _read(self, http_request: web.Request) -> tuple[dict[str, Any], ChatCompletionRequest, ChatRequest]:
        if (http_request.content_length or 0) > self.config.max_body:
            raise RequestRejected(f"the body is larger than this server's {self.config.max_body} bytes", status=413)
        body = await http_request.read()  # aiohttp refuses (413) past client_max_size = max_body
        # Decoding and validating untrusted input is CPU work: a worker thread, never the event loop.
        payload, parsed, request = await asyncio.to_thread(read_request, body, self.limits)
        if self.model_names is not None and parsed.model is not None and parsed.model not in self.model_names:
            known = ", ".join(sorted(self.model_names))
            message = f"The model `{parsed.model}` does not exist (this server has {known})"
            raise RequestRejected(message, "model", status=404, code="model_not_found")
        if self.backend is not None:
            budget = await asyncio.to_thread(self.backend.token_budget, request)  # may tokenise
            if budget is not None:
                request = fit_to_context(request, parsed.requested_max_tokens, budget)
        return payload, parsed, request

    def _overloaded(self) -> web.Response:
        message = "the server is at capacity; retry after the time in Retry-After"
        body = error_body(message, "rate_limit_error", None, "rate_limit_exceeded")
        return web.json_response(body, status=429, headers={"Retry-After": str(self.config.retry_after)})

    async def _stream(
        self,
        http_request: web.Request,
        events: AsyncIterator[StreamEvent],
        model: str,
        parsed: ChatCompletionRequest,
    ) -> web.StreamResponse:
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        writer = ChunkWriter(model)
        try:
            try:
                event = await anext(events)  # a failure before any text is still a proper HTTP error
            except StopAsyncIteration:
                event = StreamEvent("", Completion(text=""))
            except OpenCharacterError as exc:
                return _failed(exc)
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **cors_headers(http_request)}
            response = web.StreamResponse(headers=headers)
            await response.prepare(http_request)
            try:
                await response.write(writer.role())
                while True:
                    if event.text:
                        await response.write(writer.text(event.text))
                    if event.final is not None:
                        await response.write(writer.finish(event.final, include_usage))
                        break
                    event = await anext(events)
            except OpenCharacterError as exc:
                log.warning("streamed completion failed: %s", exc)
                await response.write(ChunkWriter.failure(str(exc)))
            except (ConnectionError, StopAsyncIteration):
                return response  # the client hung up (closing `events` below stops the generation)
            await response.write_eof()
            return response
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()


def _failed(exc: OpenCharacterError) -> web.Response:
    # A backend failure is the server's problem, said in the OpenAI shape; never a traceback.
    log.warning("chat completion failed: %s", exc)
    return web.json_response(error_body(str(exc), "server_error"), status=500)


async def _whole(completion: Completion) -> AsyncIterator[StreamEvent]:
    """A whole answer (from a scripted responder) streamed in word groups, as clients expect."""
    for piece in whole_answer_pieces(completion.text):
        yield StreamEvent(piece)
    yield StreamEvent("", completion)


def build_app(
    responder: Responder,
    model_name: str = "opencharacter",
    config: ServeConfig | None = None,
    *,
    key: str | None = None,
    model_names: Collection[str] | None = None,
    listed: list[str] | None = None,
    admission: Admission | None = None,
) -> web.Application:
    """The application. `model_names`: the names requests may ask for (None: any, as the test
    harness needs); `listed`: what /v1/models shows (default: `model_name`); `admission`: the
    backpressure bound (None: unbounded, for scripted servers)."""
    config = config or ServeConfig()
    route = _ChatRoute(responder, model_name, config, model_names, admission)
    guard = Guard(config, key)
    listed = listed or [model_name]

    @web.middleware
    async def no_tracebacks(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body = error_body(exc.reason, "invalid_request_error" if exc.status < 500 else "server_error")
            return web.json_response(body, status=exc.status, headers=cors_headers(request) or None)
        except Exception as exc:  # the one place a bug may not become a traceback for the client
            log.error("internal error: %s: %s", type(exc).__name__, exc)
            return web.json_response(error_body(f"internal error: {type(exc).__name__}", "server_error"), status=500)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": name, "object": "model"} for name in listed]})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=config.max_body, middlewares=[no_tracebacks, guard.middleware])
    app.router.add_post("/v1/chat/completions", route)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
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
def serve_in_thread(responder: Responder, host: str = "127.0.0.1", port: int = 0, **app_options: Any) -> Iterator[str]:
    """Run the server on its own event loop in a daemon thread; yields the base URL (…/v1).

    `app_options` go to `build_app` (config, key, model_names, admission). Stops when the block
    exits; the thread is a daemon, so a crashed test never leaves it behind.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        if "admission_limits" in app_options:  # an Admission must be made on the loop it serves
            active, waiting = app_options.pop("admission_limits")
            app_options["admission"] = Admission(active, waiting)
        # Hung handlers (fault injection) must not hold the shutdown for aiohttp's default 60 s.
        runner = web.AppRunner(build_app(responder, **app_options), access_log=None, shutdown_timeout=0.5)
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


def run_server(
    backend: Backend,
    host: str,
    port: int,
    config: ServeConfig,
    *,
    key: str | None,
    listed: list[str],
    accepted: Collection[str],
    max_active: int,
) -> None:
    """Serve a backend in the foreground until interrupted (`opencharacter serve`)."""

    async def app() -> web.Application:
        admission = Admission(max_active, config.max_waiting)  # made on the loop that serves it
        responder = BackendResponder(backend)
        options: dict[str, Any] = {"key": key, "model_names": accepted, "listed": listed, "admission": admission}
        return build_app(responder, listed[0], config, **options)

    web.run_app(app(), host=host, port=port, print=None, access_log=None)


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
