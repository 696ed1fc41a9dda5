"""The local executor: one asyncio event loop, a bounded queue of items and a pool of workers.

Items are pulled from the caller's iterable only as workers free up (the queue holds at most two
per worker), so a 306k-dialogue stage keeps a few hundred items in memory, not all of them.
Resume is the executor base's `triage`, the one rule every way of running a stage shares: an item
whose record is already in the store is skipped; an item that failed before is skipped too unless
`retry_failed`, in which case its attempts continue numbering where they stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sized
from typing import Any, TypeVar

from pydantic import BaseModel

from opencharacter.engine.engine import Engine, EngineStats
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import BackendError, FatalBackendError, ParseError
from opencharacter.executors.base import (
    ExecutorContext,
    Generate,
    Stage,
    StageResult,
    WorkItem,
    failure_reason,
    triage_chunks,
)
from opencharacter.records import ChatRequest, Completion, Failure

T = TypeVar("T")
Call = Callable[[WorkItem[Any], Generate, int], Awaitable[BaseModel]]
Work = Callable[[WorkItem[Any], int], Awaitable[BaseModel]]
_QUEUE_PER_WORKER = 2


class CountingGenerate:
    """The engine's `generate_parsed` for one item, counting the attempts really made.

    A failure's attempt count is where a retry resumes numbering, so it must be true: a parse
    error and then a transport error are two attempts, not one.
    """

    __slots__ = ("_engine", "next_attempt")

    def __init__(self, engine: Engine, first_attempt: int) -> None:
        self._engine = engine
        self.next_attempt = first_attempt

    async def __call__(
        self,
        request: ChatRequest,
        parse: Callable[[Completion], T],
        *,
        prompt_id: str,
        max_attempts: int,
        first_attempt: int = 0,
        variant: int = 0,
    ) -> tuple[T, int]:
        tried = 0

        def counted(completion: Completion) -> T:
            nonlocal tried
            tried += 1
            return parse(completion)

        try:
            return await self._engine.generate_parsed(
                request, counted, prompt_id=prompt_id, max_attempts=max_attempts, first_attempt=first_attempt,
                variant=variant,
            )  # fmt: skip
        except BackendError:
            tried += 1  # the attempt whose call failed
            raise
        finally:
            self.next_attempt = max(self.next_attempt, first_attempt + tried)


async def drive(
    stage: str,
    items: Iterable[WorkItem[Any]],
    call: Call,
    *,
    engine: Engine,
    max_attempts: int,
    retry_failed: bool = False,
    progress: StageProgress | None = None,
    workers: int | None = None,
    label: str | None = None,
    total: int | None = None,
) -> StageResult:
    """Run `call(item, generate, first_attempt)` over `items` with `workers` concurrent workers."""
    store = engine.store
    if total is None and isinstance(items, Sized):
        total = len(items)
    result = StageResult(label or stage, total=total or 0)
    count = max(1, workers or engine.concurrency)
    queue: asyncio.Queue[tuple[WorkItem[Any], int] | None] = asyncio.Queue(maxsize=count * _QUEUE_PER_WORKER)
    if progress:
        progress.start(label or stage, total=total, completed=0)  # type: ignore[arg-type]

    def advance() -> None:
        if progress:
            progress.advance(failed=result.failed)

    def skipped(items: int) -> None:
        if progress:
            progress.advance(failed=result.failed, count=items)

    async def produce() -> None:
        for chunk in triage_chunks(store, stage, items, result, retry_failed=retry_failed, skipped=skipped):
            for item, failure in chunk:
                await queue.put((item, failure.attempts if failure else 0))
            await asyncio.sleep(0)  # a long resume scan still lets signals and workers in
        for _ in range(count):
            await queue.put(None)

    async def work() -> None:
        while (entry := await queue.get()) is not None:
            item, first_attempt = entry
            generate = CountingGenerate(engine, first_attempt)
            try:
                record = await call(item, generate, first_attempt)
            except FatalBackendError:
                raise
            except (ParseError, BackendError) as exc:
                attempts = generate.next_attempt
                if attempts == first_attempt:  # a closure that called the engine itself (eval)
                    attempts += max_attempts if isinstance(exc, ParseError) else 1
                raw = exc.raw[:2000] if isinstance(exc, ParseError) and exc.raw else None
                store.put_failure(Failure(stage=stage, item_id=item.id, reason=str(exc), attempts=attempts, raw=raw))
                result.failed += 1
                result.reasons[failure_reason(exc)] += 1
            else:
                store.put_record(stage, item.id, item.sort_key, record)
                result.made += 1
            advance()

    tasks = [asyncio.create_task(produce()), *(asyncio.create_task(work()) for _ in range(count))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if progress:
            progress.finish()
    return result


async def run_stage(
    stage: str,
    items: Iterable[WorkItem[Any]],
    work: Work,
    *,
    engine: Engine,
    max_attempts: int,
    retry_failed: bool = False,
    progress: StageProgress | None = None,
    workers: int | None = None,
    label: str | None = None,
    total: int | None = None,
) -> StageResult:
    """The closure form: `work(item, first_attempt)` calls an engine itself (evaluation uses it).

    Pipeline stages go through `LocalExecutor.run`, which hands them `generate` instead.
    """

    async def call(item: WorkItem[Any], _: Generate, first_attempt: int) -> BaseModel:
        return await work(item, first_attempt)

    return await drive(
        stage, items, call, engine=engine, max_attempts=max_attempts, retry_failed=retry_failed,
        progress=progress, workers=workers, label=label, total=total,
    )  # fmt: skip


class LocalExecutor:
    """Runs every stage in this process, through the session's one engine."""

    def __init__(self, engine: Engine, progress: StageProgress | None = None, workers: int | None = None) -> None:
        self.engine, self.progress, self.workers = engine, progress, workers

    @classmethod
    def from_context(cls, context: ExecutorContext) -> LocalExecutor:
        return cls(context.engine, context.progress)

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    async def run(
        self,
        stage: Stage[Any, BaseModel],
        items: Iterable[WorkItem[Any]],
        *,
        total: int | None = None,
        retry_failed: bool = False,
        label: str | None = None,
    ) -> StageResult:
        return await drive(
            stage.name, items, stage, engine=self.engine, max_attempts=stage.max_attempts,
            retry_failed=retry_failed, progress=self.progress, workers=self.workers, label=label, total=total,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Nothing to release: the session closes the engine's backend and store."""
