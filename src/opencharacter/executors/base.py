"""The seam between the pipeline and whatever runs its work: work items, stages, results, executors.

A stage is a plain callable `stage(item, generate, first_attempt) -> record`. It builds requests and
parses completions, and holds only settings (prompt versions, sampling, the teacher's model id as
data): never an engine, a backend or a store. That is what lets an executor ship a stage, the
`BackendConfig` and a shard of items to another process or machine (a Ray task), where they run
against that process's own engine and store. Every stage object therefore pickles.

An executor runs one stage over an iterable of items, consumed lazily (a paper-scale run has 306k
dialogues: memory must not grow with them), resumes what the store already holds, commits each
result as it lands and records failures with their true attempt counts.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from opencharacter.stages.base import Generate, Stage, WorkItem

if TYPE_CHECKING:
    from opencharacter.config import BackendConfig, ExecutorConfig
    from opencharacter.engine import Engine, EngineStats
    from opencharacter.engine.progress import StageProgress
    from opencharacter.records import Failure
    from opencharacter.store import RunStore

__all__ = [
    "Executor",
    "ExecutorContext",
    "Generate",
    "Stage",
    "StageResult",
    "StageResults",
    "WorkItem",
    "failure_reason",
    "triage",
    "triage_chunks",
]

TRIAGE_CHUNK = 256
"""Items looked up in the store at once: two queries per chunk instead of two per item, so a rerun of
a finished 100k-dialogue stage skips it in a fraction of a second."""


_AFTER_ATTEMPTS = re.compile(r" \(after \d+ attempts\)$")


def failure_reason(error: BaseException | str) -> str:
    """A failure's reason as the summary groups it: the message without its attempt count."""
    return _AFTER_ATTEMPTS.sub("", str(error))[:160]


@dataclass
class StageResult:
    """What one stage did in this command: counts, and why items failed (grouped by reason)."""

    stage: str
    total: int
    done_before: int = 0
    made: int = 0
    failed: int = 0
    skipped_failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    """Failure reasons of this command's failures and of the failed-before items it skipped."""
    notes: list[str] = field(default_factory=list)
    """Why items were left out before running (e.g. rewrite on instructions without answers)."""

    @property
    def done(self) -> int:
        return self.done_before + self.made

    @property
    def unfinished(self) -> int:
        """Items that are not in the store as records: failed now or failed before and skipped."""
        return self.failed + self.skipped_failed

    def top_reasons(self, count: int = 3) -> list[tuple[str, int]]:
        return self.reasons.most_common(count)


class StageResults(list[StageResult]):
    """A command's stage results, in the order the stages ran, and what they add up to."""

    @property
    def total(self) -> int:
        return sum(result.total for result in self)

    @property
    def unfinished(self) -> int:
        return sum(result.unfinished for result in self)

    def failure_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for result in self:
            reasons.update(result.reasons)
        return reasons

    def raise_if_incomplete(self) -> None:
        """`RunIncomplete` (exit 3) when items ended as failures: the data is not what was asked."""
        if self.unfinished:
            from opencharacter.errors import RunIncomplete

            raise RunIncomplete(self.unfinished, self.total)


@dataclass
class ExecutorContext:
    """Everything an executor may need, built once per command by the run session."""

    run_dir: Path
    store: RunStore
    backend_config: BackendConfig
    engine: Engine
    """The coordinator's engine (the local executor runs every call through it)."""
    config: ExecutorConfig
    progress: StageProgress | None = None


class Executor(Protocol):
    """Runs stages over items. `local` (asyncio, this process) is built in; `ray` plugs in by name."""

    @property
    def stats(self) -> EngineStats:
        """Calls, cached calls, retries and tokens of this command, over every worker."""
        ...

    async def run(
        self,
        stage: Stage[Any, BaseModel],
        items: Iterable[WorkItem[Any]],
        *,
        total: int | None = None,
        retry_failed: bool = False,
        label: str | None = None,
    ) -> StageResult:
        """Every item's record committed to the run store (or its failure recorded).

        Items whose record the store holds are skipped; items that failed before are skipped
        unless `retry_failed`, when their attempts continue numbering where they stopped. A
        `FatalBackendError` stops the stage at once: in-flight work is cancelled, what was
        committed stays, and the error propagates. Cancellation (a signal) does the same.
        """
        ...

    async def aclose(self) -> None:
        """Release workers, clusters and connections."""
        ...


def triage(
    store: RunStore | None,
    stage: str,
    items: Iterable[WorkItem[Any]],
    result: StageResult,
    *,
    retry_failed: bool = False,
    skipped: Callable[[int], None] | None = None,
) -> Iterator[tuple[WorkItem[Any], Failure | None]]:
    """The one resume rule, for every way of running a stage (local, Ray, the dry run, batch files).

    An item whose record `store` holds is done (`result.done_before`); one that failed before is
    skipped, its reason counted, unless `retry_failed`, when it is yielded with its `Failure` so its
    attempts continue numbering where they stopped (fresh calls, not the cached failures); every
    other item is yielded with None. `skipped(n)` hears of the n items of a chunk that were not
    yielded (progress). Items are consumed lazily, a chunk at a time; `store` None means nothing
    is done yet (a dry run before the run directory exists). `result.total` ends at least the
    number of items seen.
    """
    for chunk in triage_chunks(store, stage, items, result, retry_failed=retry_failed, skipped=skipped):
        yield from chunk


def triage_chunks(
    store: RunStore | None,
    stage: str,
    items: Iterable[WorkItem[Any]],
    result: StageResult,
    *,
    retry_failed: bool = False,
    skipped: Callable[[int], None] | None = None,
) -> Iterator[list[tuple[WorkItem[Any], Failure | None]]]:
    """`triage` a chunk at a time (an empty list when the whole chunk was skipped), so an async
    caller can yield to its event loop between chunks, even on a rerun where every item is done."""
    seen = 0
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, TRIAGE_CHUNK)):
        seen += len(chunk)
        done: set[str] = set()
        failed: dict[str, Failure] = {}
        if store is not None:
            ids = [item.id for item in chunk]
            done = store.records_among(stage, ids)
            if len(done) < len(ids):
                failed = store.failures_among(stage, [i for i in ids if i not in done])
        runnable = []
        for item in chunk:
            if item.id in done:
                result.done_before += 1
                continue
            failure = failed.get(item.id)
            if failure is not None and not retry_failed:
                result.skipped_failed += 1
                result.reasons[failure_reason(failure.reason)] += 1
                continue
            runnable.append((item, failure))
        if skipped is not None and len(runnable) < len(chunk):
            skipped(len(chunk) - len(runnable))
        yield runnable
    result.total = max(result.total, seen)
