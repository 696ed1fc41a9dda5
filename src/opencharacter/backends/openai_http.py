"""OpenAI-compatible chat completions over aiohttp (OpenAI, vLLM serve, llama.cpp server, Ollama, …).

A bare aiohttp client, not the OpenAI SDK: measured here, the SDK costs ~2.7 ms CPU per request
against ~0.2 ms for aiohttp, which decides whether one client process keeps a fast server busy
(see bench/orchestration.py). One pooled session per backend.

What the engine's retries cannot do well lives here, per call:
- a fleet: each call goes to the least-loaded endpoint that is up (backends/http_fleet.py);
- rate control: 429/503 lower that endpoint's concurrency and the call waits its turn again, up to
  `rate_limit_wait`, without spending a retry; optional requests/tokens-per-minute caps;
- hedging: a call far slower than its endpoint's recent peers gets a second (and third) copy, the
  first answer wins; a call with no answer after 10× the p99 latency is cut and its retry gets the
  full `timeout`, so a slow-but-healthy call costs one extra try, never the item;
- fail fast: 401/403/404 and a server nobody can connect to raise FatalBackendError;
- structured output: json_schema → json_object → prompt, per endpoint, as the server accepts;
- the API key only where it is meant to go (backends/http_keys.py), never across a redirect.

`stream` passes the server's own stream through (`stream: true`, backends/http_stream.py), with the
same fleet, limits and refusal handling; a stream is not hedged (its text is already on its way),
and a failure before its first piece is re-sent once, as a call is.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from opencharacter.backends.base import Backend, Capabilities, EndpointStats, StreamEvent
from opencharacter.backends.http_errors import (
    OVERLOAD_STATUS,
    RETRYABLE_STATUS,
    KeyMask,
    fatal_message,
    server_message,
)
from opencharacter.backends.http_fleet import Endpoint, Fleet
from opencharacter.backends.http_keys import OPENAI_URL, key_destinations, warn_plain_http, withheld_hint
from opencharacter.backends.http_limits import RateCaps
from opencharacter.backends.http_payload import (
    build_payload,
    estimated_tokens,
    next_structured_mode,
    parse_response,
)
from opencharacter.backends.http_stream import read_chat_stream
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, ConfigError, FatalBackendError
from opencharacter.records import ChatRequest, Completion

# Hedging: after HEDGE_MIN_SAMPLES answers, a call still unanswered after
# max(HEDGE_FLOOR, HEDGE_MULTIPLIER × p95) gets a copy, and another at twice that; at most
# HEDGE_BUDGET of all calls are hedged, so a server that is slow for everyone is not doubled.
HEDGE_MIN_SAMPLES = 20
HEDGE_FLOOR = 0.5
HEDGE_MULTIPLIER = 1.2
HEDGE_BUDGET = 0.1
MAX_HEDGES = 2
# The adaptive deadline: DEADLINE_MULTIPLIER × p99, at least DEADLINE_FLOOR, at most `timeout`.
DEADLINE_MULTIPLIER = 10.0
DEADLINE_FLOOR = 5.0
_SLOW_MEMORY = 4096

try:  # the `speed` extra: ~7 % less client CPU per call (bench/pipeline_scale.py, docs/scale.md)
    import orjson

    _dumps, _loads = orjson.dumps, orjson.loads
except ImportError:  # pragma: no cover - exercised without the extra
    _dumps, _loads = (lambda value: json.dumps(value).encode("utf-8")), json.loads
_JSON_BODY = {"Content-Type": "application/json"}


@dataclass
class _Waiting:
    """How long one copy of a call may keep waiting out 429/503 answers, and how often it did."""

    give_up_at: float
    overloads: int = 0


def _call_key(request: ChatRequest) -> int:
    # The engine seeds every call from its cache key, so seed + last message tells calls apart.
    return hash((request.sampling.seed, request.messages[-1].content))


class _Race:
    """One call: its first copy, hedges, and the adaptive deadline. The first answer wins."""

    def __init__(self, backend: OpenAIBackend, request: ChatRequest) -> None:
        self.backend, self.request = backend, request
        self.loop = asyncio.get_running_loop()
        self.result: asyncio.Future[Completion] = self.loop.create_future()
        self.tasks: list[asyncio.Task[Completion]] = []
        self.running = 0
        self.error: BaseException | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.first: Endpoint | None = None
        self.sent_at = 0.0
        self.resent = False
        self.hedged = 0

    async def run(self) -> Completion:
        self.launch(None, hedge=False, primary=True)
        try:
            return await self.result
        finally:
            self.disarm()
            for task in self.tasks:
                task.cancel()

    def launch(self, avoid: Endpoint | None, hedge: bool, primary: bool = False) -> None:
        """Start a copy; the `primary` one (the first, or a re-send after it failed) times the hedges."""
        self.running += 1
        task = self.loop.create_task(self.backend._copy(self, avoid, hedge, primary))
        task.add_done_callback(self._copy_done)
        self.tasks.append(task)

    def sent(self, endpoint: Endpoint) -> None:
        """The first copy went out (again): time hedges and the deadline from this moment."""
        self.first, self.sent_at = endpoint, self.loop.time()
        self.disarm()
        self.timer = self.loop.call_later(HEDGE_FLOOR, self._check)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        """Hedge or cut a call that is slow against its endpoint's recent latencies.

        Re-evaluated on a timer rather than fixed at send time: the first calls of a run go out
        before any latency is known, and they are the ones a hang would otherwise stall longest.
        """
        self.timer = None
        if self.result.done() or self.first is None:
            return
        window = self.first.latency
        elapsed = self.loop.time() - self.sent_at
        if window.count < HEDGE_MIN_SAMPLES:
            self.timer = self.loop.call_later(HEDGE_FLOOR, self._check)
            return
        deadline = self.backend._deadline(self.first, self.request)
        if deadline is not None and elapsed >= deadline:
            self._expire(deadline)
            return
        delay = max(HEDGE_FLOOR, HEDGE_MULTIPLIER * (window.percentile(0.95) or 0.0))
        hedging = self.backend.config.hedging
        if hedging and self.hedged < MAX_HEDGES and elapsed >= delay * (self.hedged + 1):
            # Past three times the hedge delay a call is a clear outlier: hedge it even when the
            # budget is spent (by calls that were merely slow), rather than wait for the deadline.
            self._hedge(force=elapsed >= delay * (self.hedged + 3))
        due = [delay * (self.hedged + 1) - elapsed] if hedging and self.hedged < MAX_HEDGES else []
        if deadline is not None:
            due.append(deadline - elapsed)
        if due:
            self.timer = self.loop.call_later(max(0.25, min(due)), self._check)

    def _hedge(self, force: bool = False) -> None:
        if self.result.done() or not self.backend._may_hedge(force):
            return
        self.hedged += 1
        self.launch(self.first, hedge=True)

    def _expire(self, seconds: float) -> None:
        if self.result.done():
            return
        self.backend._remember_slow(self.request)
        url = self.first.base_url if self.first else "the server"
        self.result.set_exception(
            BackendError(
                f"{url}: no answer within {seconds:.1f}s (10× its p99 latency); the retry waits the full timeout",
                retryable=True,
            )
        )

    def _copy_done(self, task: asyncio.Task[Completion]) -> None:
        self.running -= 1
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when another copy won, so asyncio does not warn
        if self.result.done():
            return
        if error is None:
            self.result.set_result(task.result())
        elif isinstance(error, BackendError) and error.retryable and self.running:
            self.error = error  # another copy may still answer
        elif (
            isinstance(error, BackendError)
            and error.retryable
            and error.status not in OVERLOAD_STATUS
            and not self.resent
        ):
            # One quick re-send per call: a lone 500 or broken body is usually that call's fault,
            # and the engine's backoff would add up to a second to it. It replaces a retry the
            # engine would make anyway; a second failure goes to the engine (and its backoff).
            # Overload (429/503) is the limiter's business.
            self.resent = True
            self.launch(None, hedge=True, primary=True)
        else:
            self.result.set_exception(error)


class OpenAIBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=False, stream=True)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        urls = config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        self.base_urls = [u.rstrip("/") for u in (urls.split(",") if isinstance(urls, str) else urls)]
        self.base_url = self.base_urls[0]
        key = config.api_key()
        if not key and OPENAI_URL in self.base_urls:
            raise ConfigError(
                f"no API key: set the environment variable {config.api_key_env}, or point --base-url at your own server"
            )
        self._has_key = bool(key)
        self._mask = KeyMask(key)
        self._headers = {"Content-Type": "application/json"}
        # Per server, not per session: the key is attached only where it is meant to go.
        keyed = key_destinations(config, self.base_urls) if key else [False] * len(self.base_urls)
        bearer = {"Authorization": f"Bearer {key}"}
        self._auth = {url: bearer for url, sent in zip(self.base_urls, keyed, strict=True) if sent}
        # Built once per server: a JSON body (sent pre-encoded, see `_dumps`) and the key where it belongs.
        self._post_headers = {url: {**_JSON_BODY, **self._auth.get(url, {})} for url in self.base_urls}
        warn_plain_http(self.base_urls, keyed, config.api_key_env)
        self.fleet = Fleet(self.base_urls, config.concurrency, config.adaptive_concurrency)
        self.caps = RateCaps(config.requests_per_minute, config.tokens_per_minute)
        self._session: aiohttp.ClientSession | None = None
        self._calls = 0
        self._hedges = 0
        self._slow: OrderedDict[int, None] = OrderedDict()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # The fleet's limits bound what is in flight; the connector must not add its own cap.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            )
        return self._session

    async def complete(self, request: ChatRequest) -> Completion:
        self._calls += 1
        return await _Race(self, request).run()

    # -- one copy of a call ----------------------------------------------------------------

    async def _copy(self, race: _Race, avoid: Endpoint | None, hedge: bool, primary: bool) -> Completion:
        waiting = _Waiting(time.monotonic() + self.config.rate_limit_wait)
        redirects = 0
        while True:
            reserved = await self._reserve(race.request)
            endpoint = await self.fleet.acquire(avoid)
            if hedge:
                endpoint.hedges += 1
            epoch = endpoint.limit.epoch
            payload = build_payload(race.request, self.config.model, endpoint.structured)
            if primary:
                race.sent(endpoint)
            started = time.monotonic()
            try:
                status, retry_after, body = await self._post(endpoint, payload)
            except aiohttp.ClientConnectorError as exc:
                self._redirect_or_raise(endpoint, exc, redirects)
                redirects += 1  # it never reached the server: safe to send elsewhere at once
                continue
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                raise self._transport_error(endpoint, exc) from None
            finally:
                self.fleet.release(endpoint)
            latency = time.monotonic() - started
            if status == 200:
                try:
                    completion = parse_response(_loads(body))
                except (ValueError, BackendError) as exc:
                    self.fleet.failed(endpoint)
                    message = exc.message if isinstance(exc, BackendError) else "malformed JSON"
                    raise BackendError(f"{endpoint.base_url} answered {message}", status=200, retryable=True) from None
                self._succeeded(endpoint, latency, reserved, completion)
                return completion
            if primary:
                race.disarm()
            await self._after_refusal(race.request, endpoint, epoch, payload, status, retry_after, body, waiting)

    async def _reserve(self, request: ChatRequest) -> float:
        if not self.caps.active:
            return 0.0
        return await self.caps.acquire(estimated_tokens(build_payload(request, self.config.model)))

    def _succeeded(self, endpoint: Endpoint, latency: float, reserved: float, completion: Completion) -> None:
        self.fleet.succeeded(endpoint, latency)
        self.caps.settle(reserved, completion.prompt_tokens + completion.completion_tokens)

    def _redirect_or_raise(self, endpoint: Endpoint, exc: aiohttp.ClientConnectorError, redirects: int) -> None:
        """A connection that never reached the server: returns when it may go to another server
        at once, else raises the error it is."""
        self.fleet.failed(endpoint, refused=True)
        if self.fleet.all_refused_before_success():
            raise FatalBackendError(self._refused_message(exc)) from None
        if redirects < len(self.fleet.endpoints) and self.fleet.has_other_up(endpoint):
            return
        raise BackendError(self._mask(f"{endpoint.base_url}: cannot connect: {exc}"), retryable=True) from None

    def _transport_error(self, endpoint: Endpoint, exc: BaseException) -> BackendError:
        self.fleet.failed(endpoint)
        if isinstance(exc, asyncio.TimeoutError):
            return BackendError(f"{endpoint.base_url}: no answer within {self.config.timeout:g}s", retryable=True)
        return BackendError(self._mask(f"{endpoint.base_url}: {type(exc).__name__}: {exc}"), retryable=True)

    async def _after_refusal(
        self,
        request: ChatRequest,
        endpoint: Endpoint,
        epoch: int,
        payload: dict[str, Any],
        status: int,
        retry_after: float | None,
        body: bytes,
        waiting: _Waiting,
    ) -> None:
        """A non-200 answer: returns when the call should go again (after waiting out an overload,
        or in a weaker structured form), else raises the error it is."""
        said = self._mask(server_message(body))
        if status in OVERLOAD_STATUS:
            endpoint.rate_limited += 1
            endpoint.limit.on_overload(epoch)
            waiting.overloads += 1
            wait = retry_after if retry_after is not None else min(5.0, 0.01 * 2**waiting.overloads)
            wait *= random.uniform(0.8, 1.2)
            if time.monotonic() + wait > waiting.give_up_at:
                raise BackendError(
                    f"{endpoint.base_url} kept answering {status} for {self.config.rate_limit_wait:g}s: {said}",
                    status=status,
                    retryable=True,
                )
            await asyncio.sleep(wait)
            return
        if status in (401, 403, 404):
            keyed = endpoint.base_url in self._auth
            message = fatal_message(
                status,
                endpoint.base_url,
                endpoint.chat_url,
                self.config.model,
                self.config.api_key_env,
                keyed,
                said,
                withheld=withheld_hint(self.config.api_key_env) if self._has_key and not keyed else None,
            )
            raise FatalBackendError(self._mask(message), status)
        if request.response_schema is not None:
            weaker = next_structured_mode(endpoint.structured, status, said)
            if weaker is not None:
                if endpoint.structured == payload_mode(payload):
                    endpoint.structured = weaker
                return
        if status >= 500:
            self.fleet.failed(endpoint)
        if 300 <= status < 400:
            said = f"a redirect to {self._mask(said or 'elsewhere')}, which is not followed (the key would go with it)"
        raise BackendError(
            f"{endpoint.chat_url} answered {status}: {said}", status=status, retryable=status in RETRYABLE_STATUS
        )

    # -- streaming -------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self._calls += 1
        resent = False
        while True:
            started = False
            try:
                async for event in self._stream_copy(request):
                    started = True
                    yield event
                return
            except BackendError as exc:
                # One quick re-send before any text went out, as `complete` does; after that the
                # caller has shown part of an answer, and only it can decide to ask again.
                if started or resent or not exc.retryable or isinstance(exc, FatalBackendError):
                    raise
                resent = True

    async def _stream_copy(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        waiting = _Waiting(time.monotonic() + self.config.rate_limit_wait)
        redirects = 0
        while True:
            reserved = await self._reserve(request)
            endpoint = await self.fleet.acquire()
            epoch = endpoint.limit.epoch
            payload = build_payload(request, self.config.model, endpoint.structured)
            payload.update(stream=True, stream_options={"include_usage": True})
            started = time.monotonic()
            try:
                async with self._client().post(
                    endpoint.chat_url,
                    data=_dumps(payload),
                    headers=self._post_headers[endpoint.base_url],
                    allow_redirects=False,
                ) as response:
                    if response.status == 200:
                        content_type = response.headers.get("Content-Type", "")
                        async for event in read_chat_stream(
                            endpoint.base_url, content_type, response.content.iter_any()
                        ):
                            if event.final is not None:
                                self._succeeded(endpoint, time.monotonic() - started, reserved, event.final)
                            yield event
                        return
                    status, retry_after, body = response.status, _retry_after(response.headers), await response.read()
            except aiohttp.ClientConnectorError as exc:
                self._redirect_or_raise(endpoint, exc, redirects)
                redirects += 1
                continue
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                raise self._transport_error(endpoint, exc) from None
            except BackendError:
                self.fleet.failed(endpoint)
                raise
            finally:
                self.fleet.release(endpoint)
            await self._after_refusal(request, endpoint, epoch, payload, status, retry_after, body, waiting)

    async def _post(self, endpoint: Endpoint, payload: dict[str, Any]) -> tuple[int, float | None, bytes]:
        headers = self._post_headers[endpoint.base_url]
        post = self._client().post(endpoint.chat_url, data=_dumps(payload), headers=headers, allow_redirects=False)
        async with post as response:
            body = await response.read()
            return response.status, _retry_after(response.headers), body

    def _refused_message(self, exc: aiohttp.ClientConnectorError) -> str:
        if isinstance(exc.os_error, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = getattr(exc.os_error, "strerror", None) or str(exc)
        where = self.base_url if len(self.base_urls) == 1 else f"any of the {len(self.base_urls)} servers in --base-url"
        return self._mask(f"cannot connect to {where} ({reason}): is the server running, and is --base-url right?")

    # -- hedging and deadlines -------------------------------------------------------------

    def _may_hedge(self, force: bool = False) -> bool:
        if not force and self._hedges >= HEDGE_BUDGET * self._calls + 1:
            return False
        self._hedges += 1
        return True

    def _deadline(self, endpoint: Endpoint, request: ChatRequest) -> float | None:
        """Seconds after which an unanswered call is cut; None: the configured timeout applies."""
        p99 = endpoint.latency.percentile(0.99)
        if p99 is None or endpoint.latency.count < HEDGE_MIN_SAMPLES or _call_key(request) in self._slow:
            return None
        deadline = max(DEADLINE_FLOOR, DEADLINE_MULTIPLIER * p99)
        return deadline if deadline < self.config.timeout else None

    def _remember_slow(self, request: ChatRequest) -> None:
        self._slow[_call_key(request)] = None
        while len(self._slow) > _SLOW_MEMORY:
            self._slow.popitem(last=False)

    def endpoint_stats(self) -> list[EndpointStats]:
        return self.fleet.stats()

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def payload_mode(payload: dict[str, Any]) -> str:
    """Which structured form a payload was sent in (the endpoint may have moved on meanwhile)."""
    response_format = payload.get("response_format")
    return response_format["type"] if response_format else "prompt"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; our own backoff applies instead


__all__ = ["OPENAI_URL", "OpenAIBackend", "build_payload", "parse_response"]
