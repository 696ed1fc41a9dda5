"""Micro-batching for in-process backends: many concurrent `complete()` calls become batched generate calls.

The engine keeps up to `concurrency` requests in flight; this collects them, groups requests that
can share one generate call (same sampling and schema), prefers similar prompt lengths (less
padding), and always includes the oldest waiting request so none starves.

Callers that arrive a few milliseconds apart (a server's requests, each parsed in a worker thread)
still share a batch: while requests keep arriving and the batch is not full, the batcher waits a
little longer, a few milliseconds at a time, at most `_GATHER_MAX` in all. A batch that is full,
or a pause in arrivals, starts at once, so a pipeline's steady stream of calls pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

_GATHER_TURNS = 8
_GATHER_STEP = 0.005
_GATHER_MAX = 0.03
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item]):
    item: Item
    group: Hashable
    length: int
    future: asyncio.Future[Any] = field(repr=False)


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result]],
        batch_size: int,
        group_of: Callable[[Item], Hashable],
        length_of: Callable[[Item], int],
    ) -> None:
        self._run_batch, self._batch_size = run_batch, batch_size
        self._group_of, self._length_of = group_of, length_of
        self._pending: list[_Pending[Item]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append(_Pending(item, self._group_of(item), self._length_of(item), future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    def _next_batch(self) -> list[_Pending[Item]]:
        oldest = self._pending[0]
        same = [p for p in self._pending if p.group == oldest.group]
        same.sort(key=lambda p: abs(p.length - oldest.length))
        batch = same[: self._batch_size]
        chosen = {id(p) for p in batch}
        self._pending = [p for p in self._pending if id(p) not in chosen]
        return batch

    async def _drain(self) -> None:
        while self._pending:
            # Let callers that are a few awaits behind (cache lookups, tokenising) join this batch:
            # a generate call costs seconds, a few idle loop turns cost microseconds.
            for _ in range(_GATHER_TURNS):
                if len(self._pending) >= self._batch_size:
                    break
                await asyncio.sleep(0)
            waited, seen = 0.0, 1
            while seen < len(self._pending) < self._batch_size and waited < _GATHER_MAX:
                seen = len(self._pending)  # more came during the turns: others may be on their way
                await asyncio.sleep(_GATHER_STEP)
                waited += _GATHER_STEP
            batch = self._next_batch()
            try:
                results = await asyncio.to_thread(self._run_batch, [p.item for p in batch])
            except BaseException as exc:  # handed to each waiting caller, who re-raises it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
