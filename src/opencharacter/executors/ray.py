"""The Ray executor: a stage's items sharded over Ray actors, each with its own engine and shard store.

Items go to shard `shard_of(item.id, N)`, so an item always lands in the same shard store
(`RUN/shards/<i>-of-<N>/`), whichever run or machine sends it. Each shard is one Ray actor that
builds its backend from the `BackendConfig` inside its own process (an HTTP client for an
OpenAI-compatible endpoint; for `transformers`/`vllm`, a model loaded once per worker) and runs the
local executor over the chunks it is sent, committing to its shard store as results land. When the
stage is done the coordinator merges the shard stores into `RUN/store.sqlite` (idempotently), so
the run files come out exactly as a local run writes them.

A worker process that dies is restarted by Ray and its chunk is sent again: the shard store
already holds what it committed, so the retry only makes the calls that were lost. If Ray gives up
(or the coordinator dies), the next run resumes from the same shard stores.

The run directory must be on storage every Ray node can write (one machine, or a shared file
system); each shard store has a single writer at a time.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig, ExecutorConfig
from opencharacter.engine import Engine, EngineStats
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import ConfigError, MissingDependencyError, OpenCharacterError
from opencharacter.executors.base import ExecutorContext, Stage, StageResult, WorkItem, triage_chunks
from opencharacter.executors.local import LocalExecutor
from opencharacter.executors.shards import (
    FINISHED,
    ShardSpec,
    claim_settings,
    mark_finished,
    merge_shards,
    open_shard,
    settle,
    shard_dir,
    shard_of,
)
from opencharacter.records import Failure
from opencharacter.store import RunStore
from opencharacter.store.identity import SETTINGS, RunIdentity
from opencharacter.store.lock import RunLock

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("ray", "ray") from None

CHUNK_ITEMS = 256
"""Items per actor call: small enough for steady progress and bounded memory, large enough that
Ray's per-call overhead (~1 ms) is noise next to the calls an item makes."""
IN_FLIGHT_PER_SHARD = 2
"""Chunks queued on each actor, so it never idles at a chunk's tail while the next one is sent."""
RESTARTS = 3
"""How often Ray restarts a dead worker and resends its chunk before the run stops (rerun resumes)."""


@dataclass
class ShardOutcome:
    """What one actor call did: the local executor's result and its engine's counters."""

    result: StageResult
    stats: EngineStats


class ShardWorker:
    """One shard: its store, its backend (built here, in the worker process) and a fresh engine per call."""

    def __init__(self, run_dir: str, spec: ShardSpec, backend_config: BackendConfig) -> None:
        self.run_dir, self.spec, self.backend_config = run_dir, spec, backend_config
        self.store: RunStore | None = None
        self.backend: Any = None
        self.lock: RunLock | None = None
        self.running = 0

    def _open(self) -> RunStore:
        """Lazily, so a bad backend or teacher surfaces as the call's error, not as a dead actor."""
        if self.store is None:
            # One writer per shard store, also against a `--shard` process on the same run directory.
            lock = RunLock(shard_dir(self.run_dir, self.spec), f"ray shard {self.spec}").acquire()
            try:
                store = open_shard(self.run_dir, self.spec)
                try:
                    backend = build_backend(self.backend_config)
                    RunIdentity(store).teacher(backend.model_id, check_decoding=False)
                except BaseException:
                    store.close()
                    raise
            except BaseException:
                lock.release()
                raise
            self.store, self.backend, self.lock = store, backend, lock
        return self.store

    async def run(
        self,
        stage: Stage[Any, BaseModel],
        items: list[WorkItem[Any]],
        failures: list[Failure],
        retry_failed: bool,
        settings: dict[str, Any],
    ) -> ShardOutcome:
        store = self._open()
        claim_settings(store, settings)  # the run's; a shard left by a run under others is refused
        self.running += 1
        store.set_meta(FINISHED, False)
        for failure in failures:  # failures the run store knows of and this shard may not (a local run's)
            known = store.get_failure(failure.stage, failure.item_id)
            if known is None or known.attempts < failure.attempts:
                store.put_failure(failure)
        config = self.backend_config
        engine = Engine(self.backend, store, concurrency=config.concurrency, max_retries=config.max_retries)
        try:
            result = await LocalExecutor(engine).run(stage, items, total=len(items), retry_failed=retry_failed)
        finally:
            self.running -= 1
            settle(store)  # the coordinator merges as soon as this returns
        if self.running == 0:
            mark_finished(store)
        return ShardOutcome(result, engine.stats)

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()
        if self.store is not None:
            self.store.close()
        if self.lock is not None:
            self.lock.release()
        self.store = self.backend = self.lock = None


@dataclass
class _Lane:
    index: int
    pending: deque[tuple[Any, int]] = field(default_factory=deque)
    buffer: list[WorkItem[Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class RayExecutor:
    """Coordinates the shards: sends chunks, folds their results, merges their stores afterwards."""

    def __init__(
        self,
        run_dir: Path,
        store: RunStore,
        backend_config: BackendConfig,
        config: ExecutorConfig,
        progress: StageProgress | None = None,
    ) -> None:
        self.run_dir, self.store, self.backend_config, self.progress = run_dir, store, backend_config, progress
        self.stats = EngineStats()
        self._started_ray = False
        if not ray.is_initialized():
            self._init_ray(config)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        self.shards = config.workers or max(1, int(cpus))
        # Every shard's actor must fit at once (an HTTP client needs little CPU): a fair share, rounded
        # down, since Ray compares resources exactly (3 x 0.6667 CPU does not fit on 2).
        self._actor_options: dict[str, Any] = {
            "num_cpus": math.floor(min(1.0, cpus / self.shards) * 1000) / 1000,
            "num_gpus": config.gpus_per_worker,
            "max_restarts": RESTARTS,
            "max_task_retries": RESTARTS,
        }
        # The API key is never put in the actors' runtime_env: Ray keeps that in the cluster's control
        # store, readable by anyone who can list actors or open the dashboard. Each worker reads the key
        # where it runs (BackendConfig.api_key: its environment, else `api_key_file`); a local Ray
        # started for this command inherits this process's environment.
        self._actors: list[Any] = [None] * self.shards

    def _init_ray(self, config: ExecutorConfig) -> None:
        """Connect to `address` (or RAY_ADDRESS), else start a local Ray for this command only."""
        local = config.address is None and not os.environ.get("RAY_ADDRESS")
        try:
            ray.init(
                address=config.address,
                num_cpus=(config.workers or os.cpu_count() or 1) if local else None,
                include_dashboard=False,
                logging_level="WARNING",
            )
        except ConnectionError as exc:
            where = config.address or os.environ.get("RAY_ADDRESS")
            raise ConfigError(f"cannot reach the Ray cluster at {where}: {exc}") from None
        self._started_ray = True

    @classmethod
    def from_context(cls, context: ExecutorContext) -> RayExecutor:
        return cls(context.run_dir, context.store, context.backend_config, context.config, context.progress)

    def _actor(self, index: int) -> Any:
        """Shard `index`'s worker, started the first time it is sent work (a resumed run that has
        nothing left to do starts none)."""
        if self._actors[index] is None:
            actor_class = ray.remote(ShardWorker).options(**self._actor_options)
            self._actors[index] = actor_class.remote(
                str(self.run_dir), ShardSpec(index, self.shards), self.backend_config
            )
        return self._actors[index]

    async def run(
        self,
        stage: Stage[Any, BaseModel],
        items: Iterable[WorkItem[Any]],
        *,
        total: int | None = None,
        retry_failed: bool = False,
        label: str | None = None,
    ) -> StageResult:
        """Resume is decided here against the run store first (merged work is never sent again),
        then again in each shard against its own store (work a killed run left unmerged)."""
        name = label or stage.name
        result = StageResult(name, total=total or 0)
        progress = self.progress
        if progress:
            progress.start(name, total=total, completed=0)  # type: ignore[arg-type]
        lanes = [_Lane(index) for index in range(self.shards)]
        settings = self.store.get_meta(SETTINGS, {})

        def advance(count: int) -> None:
            if progress:
                progress.advance(failed=result.failed, count=count)

        async def send(lane: _Lane) -> None:
            while len(lane.pending) >= IN_FLIGHT_PER_SHARD:
                await collect(lane)
            ref = self._actor(lane.index).run.remote(stage, lane.buffer, lane.failures, retry_failed, settings)
            lane.pending.append((ref, len(lane.buffer)))
            lane.buffer, lane.failures = [], []

        async def collect(lane: _Lane) -> None:
            ref, _ = lane.pending.popleft()
            outcome: ShardOutcome = await ref
            self._fold(result, outcome)
            advance(outcome.result.total)

        try:
            chunks = triage_chunks(self.store, stage.name, items, result, retry_failed=retry_failed, skipped=advance)
            for chunk in chunks:
                for item, failure in chunk:
                    lane = lanes[shard_of(item.id, self.shards)]
                    lane.buffer.append(item)
                    if failure is not None:
                        lane.failures.append(failure)
                    if len(lane.buffer) >= CHUNK_ITEMS:
                        await send(lane)
                await asyncio.sleep(0)
            for lane in lanes:
                if lane.buffer:
                    await send(lane)
            for lane in lanes:
                while lane.pending:
                    await collect(lane)
        except RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, OpenCharacterError) else exc) from None
        except RayActorError as exc:
            raise OpenCharacterError(
                f"a Ray worker died {RESTARTS + 1} times running {name} ({exc.__class__.__name__}); "
                "what it finished is kept: rerun the same command to resume"
            ) from None
        finally:
            for lane in lanes:
                for ref, _ in lane.pending:
                    ray.cancel(ref)
            settle(self.store)  # this command's own writes (pairings) must not hold the lock merge needs
            merge_shards(self.run_dir)
            if progress:
                progress.finish()
        return result

    def _fold(self, result: StageResult, outcome: ShardOutcome) -> None:
        part = outcome.result
        result.done_before += part.done_before
        result.made += part.made
        result.failed += part.failed
        result.skipped_failed += part.skipped_failed
        result.reasons.update(part.reasons)
        for key in ("new_calls", "cached_calls", "retries", "prompt_tokens", "completion_tokens"):
            setattr(self.stats, key, getattr(self.stats, key) + getattr(outcome.stats, key))

    async def aclose(self) -> None:
        started = [actor for actor in self._actors if actor is not None]
        try:
            await asyncio.gather(*(actor.close.remote() for actor in started), return_exceptions=True)
            for actor in started:
                ray.kill(actor)
        finally:
            self._actors = [None] * self.shards
            if self._started_ray:
                ray.shutdown()
