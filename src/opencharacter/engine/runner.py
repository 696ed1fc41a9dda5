"""Runs one stage's work items through a bounded pool of workers, committing each result as it lands.

Resume lives here once for every stage: an item whose record is already in the store is skipped;
an item that failed before is skipped too unless `retry_failed`, in which case its attempts
continue numbering where they stopped (so it gets fresh calls, not the cached failures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from opencharacter.engine.engine import Engine
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import BackendError, ParseError
from opencharacter.records import Failure

Payload = TypeVar("Payload")


@dataclass(frozen=True)
class WorkItem(Generic[Payload]):
    id: str
    sort_key: str
    payload: Payload


@dataclass
class StageResult:
    stage: str
    total: int
    done_before: int = 0
    made: int = 0
    failed: int = 0
    skipped_failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.done_before + self.made


Work = Callable[[WorkItem[Any], int], Awaitable[BaseModel]]


async def run_stage(
    stage: str,
    items: Sequence[WorkItem[Any]],
    work: Work,
    *,
    engine: Engine,
    max_attempts: int,
    retry_failed: bool = False,
    progress: StageProgress | None = None,
    workers: int | None = None,
    label: str | None = None,
) -> StageResult:
    """`work(item, first_attempt)` returns the record to store, or raises ParseError/BackendError."""
    store = engine.store
    result = StageResult(label or stage, total=len(items))
    todo: list[tuple[WorkItem[Any], int]] = []
    for item in items:
        if store.has_record(stage, item.id):
            result.done_before += 1
            continue
        failure = store.get_failure(stage, item.id)
        if failure is not None and not retry_failed:
            result.skipped_failed += 1
            continue
        todo.append((item, failure.attempts if failure else 0))
    if progress:
        progress.start(label or stage, total=len(items), completed=result.done_before + result.skipped_failed)

    queue: asyncio.Queue[tuple[WorkItem[Any], int]] = asyncio.Queue()
    for entry in todo:
        queue.put_nowait(entry)

    async def worker() -> None:
        while True:
            try:
                item, first_attempt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                record = await work(item, first_attempt)
            except (ParseError, BackendError) as exc:
                attempts = first_attempt + (max_attempts if isinstance(exc, ParseError) else 1)
                raw = exc.raw[:2000] if isinstance(exc, ParseError) and exc.raw else None
                store.put_failure(Failure(stage=stage, item_id=item.id, reason=str(exc), attempts=attempts, raw=raw))
                result.failed += 1
                kind = type(exc).__name__
                result.reasons[kind] = result.reasons.get(kind, 0) + 1
            else:
                store.put_record(stage, item.id, item.sort_key, record)
                result.made += 1
            if progress:
                progress.advance(failed=result.failed)

    count = min(workers or engine.concurrency, max(1, len(todo)))
    tasks = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if progress:
            progress.finish()
    return result
