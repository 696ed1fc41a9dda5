"""A fleet of OpenAI-compatible endpoints: least-loaded dispatch, per-endpoint limits and health.

One server is a fleet of one. Each endpoint has its own AIMD limit (servers differ in size), its own
latency window (for hedging and the adaptive deadline) and its own memory of which structured-output
form it accepts. Waiting callers queue FIFO and are handed a slot when one frees up, so a release
wakes exactly one waiter (no thundering herd at concurrency 1000).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from opencharacter.backends.base import EndpointStats
from opencharacter.backends.http_limits import AimdLimit, LatencyWindow

# An endpoint this many failures in a row is taken out of a fleet for a cool-down.
FAILURES_BEFORE_OUT = 5
FIRST_COOLDOWN = 1.0
MAX_COOLDOWN = 60.0


@dataclass(eq=False)
class Endpoint:
    base_url: str
    limit: AimdLimit
    latency: LatencyWindow
    structured: str = "json_schema"
    """The response_format form this server accepts: json_schema → json_object → prompt."""
    in_flight: int = 0
    served: int = 0
    failures: int = 0
    rate_limited: int = 0
    hedges: int = 0
    consecutive_failures: int = 0
    refused_before_success: bool = False
    succeeded: bool = False
    down_until: float = 0.0
    cooldown: float = FIRST_COOLDOWN
    probing: bool = False
    """Back from a cool-down: one request at a time until one succeeds."""

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def slots(self) -> int:
        return 1 if self.probing else self.limit.slots

    def load(self) -> float:
        return self.in_flight / self.slots()


class Fleet:
    def __init__(self, base_urls: list[str], concurrency: int, adaptive: bool) -> None:
        self.endpoints = [
            Endpoint(url.rstrip("/"), AimdLimit(concurrency, adaptive), LatencyWindow()) for url in base_urls
        ]
        self.any_success = False
        self._waiters: deque[asyncio.Future[Endpoint]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    # -- dispatch ---------------------------------------------------------------------------

    def _pick(self, avoid: Endpoint | None = None) -> Endpoint | None:
        now = time.monotonic()
        best: Endpoint | None = None
        for endpoint in self.endpoints:
            if endpoint.down_until > now:
                continue
            if endpoint.down_until:  # its cool-down is over: let one request probe it
                endpoint.down_until, endpoint.probing = 0.0, True
            if endpoint.in_flight >= endpoint.slots():
                continue
            if best is None or (endpoint is not avoid and (best is avoid or endpoint.load() < best.load())):
                best = endpoint
        return best

    async def acquire(self, avoid: Endpoint | None = None) -> Endpoint:
        """A slot on the least-loaded endpoint that is up (preferring not `avoid`, for hedges)."""
        if not self._waiters:
            endpoint = self._pick(avoid)
            if endpoint is not None:
                endpoint.in_flight += 1
                return endpoint
        waiter: asyncio.Future[Endpoint] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._arm_timer()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed a slot just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        while self._waiters:
            endpoint = self._pick()
            if endpoint is None:
                self._arm_timer()
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            endpoint.in_flight += 1
            waiter.set_result(endpoint)

    def _arm_timer(self) -> None:
        """Wake waiters when the first endpoint's cool-down ends (nobody releases a down endpoint)."""
        downs = [e.down_until for e in self.endpoints if e.down_until]
        if not downs or (self._timer is not None and not self._timer.cancelled()):
            return
        delay = max(0.0, min(downs) - time.monotonic()) + 0.001

        def fire() -> None:
            self._timer = None
            self.wake()

        self._timer = asyncio.get_running_loop().call_later(delay, fire)

    # -- health -----------------------------------------------------------------------------

    def succeeded(self, endpoint: Endpoint, latency: float) -> None:
        endpoint.served += 1
        endpoint.consecutive_failures = 0
        endpoint.cooldown = FIRST_COOLDOWN
        endpoint.probing = False
        endpoint.succeeded = self.any_success = True
        endpoint.latency.add(latency)
        endpoint.limit.on_success(latency)

    def failed(self, endpoint: Endpoint, *, refused: bool = False) -> None:
        """A transport or server failure; a refusal or a run of failures takes a fleet member out."""
        endpoint.failures += 1
        endpoint.consecutive_failures += 1
        if refused and not endpoint.succeeded:
            endpoint.refused_before_success = True
        if refused or endpoint.probing or endpoint.consecutive_failures >= FAILURES_BEFORE_OUT:
            self._take_out(endpoint)

    def _take_out(self, endpoint: Endpoint) -> None:
        # Only when another endpoint can take the traffic: for a lone server the engine's
        # retries and backoff are the right tool, and a pause would only stall the run.
        if not any(e is not endpoint and e.down_until == 0.0 for e in self.endpoints):
            return
        endpoint.down_until = time.monotonic() + endpoint.cooldown
        endpoint.cooldown = min(MAX_COOLDOWN, endpoint.cooldown * 2)
        endpoint.probing = False
        self._arm_timer()

    def has_other_up(self, endpoint: Endpoint) -> bool:
        now = time.monotonic()
        return any(e is not endpoint and e.down_until <= now for e in self.endpoints)

    def all_refused_before_success(self) -> bool:
        return not self.any_success and all(e.refused_before_success for e in self.endpoints)

    def stats(self) -> list[EndpointStats]:
        now = time.monotonic()
        return [
            EndpointStats(
                url=e.base_url,
                served=e.served,
                failures=e.failures,
                rate_limited=e.rate_limited,
                hedges=e.hedges,
                concurrency=e.limit.slots,
                out=e.down_until > now,
                structured_output=e.structured,
            )
            for e in self.endpoints
        ]
