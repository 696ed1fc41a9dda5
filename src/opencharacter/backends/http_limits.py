"""The arithmetic of rate control for the openai backend: latency windows, AIMD limits, per-minute caps.

Kept apart from the HTTP code so each rule can be read (and unit-tested) on its own. Nothing here
sleeps or does I/O except `RateCaps.acquire`, which waits for per-minute budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

# Percentiles are recomputed every this many samples: sorting a 256-sample window per call
# would be the most expensive thing the client does.
_RESORT_EVERY = 16


class LatencyWindow:
    """The last `size` successful call latencies of one endpoint, with cached percentiles."""

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []
        self._pending = 0
        self.count = 0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self._pending += 1
        if self._pending >= _RESORT_EVERY or len(self._sorted) < _RESORT_EVERY:
            self._sorted = sorted(self._samples)
            self._pending = 0

    def percentile(self, fraction: float) -> float | None:
        if not self._sorted:
            return None
        index = min(len(self._sorted) - 1, int(fraction * len(self._sorted)))
        return self._sorted[index]


class AimdLimit:
    """How many requests one endpoint may have in flight: additive increase, multiplicative decrease.

    Starts at the ceiling (`--concurrency`), so a healthy server is driven at full speed from the
    first call. A 429/503 cuts the limit by `overload_factor`, at most once per round trip: requests
    sent before the last cut carry an older epoch and their rejections are the same congestion event,
    not new ones (otherwise 100 simultaneous 429s would drive the limit to 1). Latency that rises
    above `latency_tolerance` × the recent baseline cuts gently (`latency_factor`), once per
    window of `limit` answers. Each success adds 1/limit, i.e. +1 per round trip, as TCP does.
    """

    overload_factor = 0.85
    latency_factor = 0.9
    latency_tolerance = 3.0

    def __init__(self, ceiling: int, adaptive: bool = True) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(ceiling)
        self.epoch = 0
        self.cuts = 0
        self._window: list[float] = []
        self._baseline: float | None = None

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))

    def on_success(self, latency: float) -> None:
        if not self.adaptive:
            return
        self.limit = min(float(self.ceiling), self.limit + 1.0 / max(1.0, self.limit))
        self._window.append(latency)
        if len(self._window) >= max(8, self.slots):
            median = sorted(self._window)[len(self._window) // 2]
            self._window.clear()
            if self._baseline is not None and median > self.latency_tolerance * self._baseline:
                self._cut(self.latency_factor)
            # The baseline forgets slowly (+10% a window): "rising" means against the recent past,
            # so a stage with longer answers costs a few gentle cuts, not a slide to one slot.
            self._baseline = median if self._baseline is None else min(median, self._baseline * 1.1)

    def on_overload(self, epoch: int) -> None:
        """A 429 or 503 for a request sent in `epoch`; only the first of a round trip cuts."""
        if self.adaptive and epoch == self.epoch:
            self._cut(self.overload_factor)

    def _cut(self, factor: float) -> None:
        self.limit = max(1.0, self.limit * factor)
        self.epoch += 1
        self.cuts += 1


class _Bucket:
    """A token bucket refilled at `per_minute / 60` per second, holding at most `capacity`."""

    def __init__(self, per_minute: int, capacity: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.level = capacity
        self.stamp = time.monotonic()

    def wait_for(self, amount: float) -> float:
        """Take `amount` if it is there (returns 0), else the seconds until it will be."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(amount, self.capacity)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def refund(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class RateCaps:
    """Optional requests-per-minute and tokens-per-minute caps, shared by every endpoint of a backend.

    Hosted APIs meter per account, not per server. Tokens are counted the way they meter them before
    the call (prompt estimate + max_tokens); the unused part is given back when the usage comes in.
    Bursts are limited to one second's worth: providers enforce per-minute limits in sub-minute
    slices (OpenAI: "60,000 requests/minute may be enforced as 1,000 requests/second").
    """

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.requests = (
            _Bucket(requests_per_minute, max(1.0, requests_per_minute / 60)) if requests_per_minute else None
        )
        self.tokens = _Bucket(tokens_per_minute, max(1.0, tokens_per_minute / 60)) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    async def acquire(self, tokens: int) -> float:
        """Wait until one request of `tokens` may go; returns the tokens reserved (to settle later)."""
        async with self._lock:  # FIFO: one waiter at a time takes budget, so nobody starves
            reserved = 0.0
            if self.requests is not None:
                while (delay := self.requests.wait_for(1)) > 0:
                    await asyncio.sleep(delay)
            if self.tokens is not None:
                reserved = min(float(tokens), self.tokens.capacity)
                while (delay := self.tokens.wait_for(reserved)) > 0:
                    await asyncio.sleep(delay)
            return reserved

    def settle(self, reserved: float, used: int) -> None:
        if self.tokens is not None and reserved > used:
            self.tokens.refund(reserved - used)
