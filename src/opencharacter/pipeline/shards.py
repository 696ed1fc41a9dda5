"""`--shard i/N`: one shard of a command's items, run by a plain process into its shard store.

For users without Ray: start `profiles --shard i/N` for every i (processes on one machine, or
machines sharing the run directory's storage), `opencharacter merge --run RUN`, then the same for
`synthesize`, and merge again. Each shard builds *all* work items (so sort keys, and therefore the
merged files, are exactly a local run's) and runs only those `shard_of` gives it.

A shard never writes the run store, so the N processes never contend for one SQLite writer (nor
for the run's lock); each holds its own shard directory's lock. Before it starts, a shard is seeded
from the run store with what the run already decided: its teacher and settings, the instruction
pairings, and the characters (`synthesize` pairs each instruction with characters of every shard).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from opencharacter.config import BackendConfig, ExecutorConfig, ProfilesConfig, SynthesisConfig
from opencharacter.engine import EngineStats
from opencharacter.errors import ConfigError
from opencharacter.executors import Executor, Stage, StageResult, WorkItem
from opencharacter.executors.shards import (
    RUN_DECISIONS,
    MergeReport,
    ShardsIncomplete,
    ShardSpec,
    mark_finished,
    open_shard,
    shard_dir,
)
from opencharacter.executors.shards import merge_shards as merge_stores
from opencharacter.export.run_files import write_run_files
from opencharacter.pipeline.commands import LoadedSource, profiles_on, synthesis_on
from opencharacter.pipeline.session import RunSession
from opencharacter.records import Persona
from opencharacter.stages import pairing
from opencharacter.stages import profiles as profile_stage
from opencharacter.store import RunStore, transfer
from opencharacter.store.layout import STORE, is_run

SEEDED_STAGES = (profile_stage.STAGE, pairing.STAGE)
"""Records a shard needs from the run: every character (for pairing) and the pairings drawn so far."""


class ShardFilter:
    """The session's executor, given only this shard's items (the others belong to other processes)."""

    def __init__(self, inner: Executor, spec: ShardSpec) -> None:
        self.inner, self.spec = inner, spec

    @property
    def stats(self) -> EngineStats:
        return self.inner.stats

    async def run(
        self,
        stage: Stage[Any, BaseModel],
        items: Iterable[WorkItem[Any]],
        *,
        total: int | None = None,
        retry_failed: bool = False,
        label: str | None = None,
    ) -> StageResult:
        mine = (item for item in items if self.spec.holds(item.id))
        return await self.inner.run(stage, mine, retry_failed=retry_failed, label=label)

    async def aclose(self) -> None:
        await self.inner.aclose()


def seed_shard(run_dir: Path, spec: ShardSpec) -> None:
    """Copy into the shard store what the run store already holds and the shard must agree with."""
    open_shard(run_dir, spec).close()
    if not is_run(run_dir):
        return
    RunStore(run_dir).close()  # migrated to this version's schema, like the shard
    transfer.seed(shard_dir(run_dir, spec) / STORE, run_dir / STORE, SEEDED_STAGES, RUN_DECISIONS)


def merge_shards(run_dir: str | Path, *, strict: bool = False) -> MergeReport:
    """`opencharacter merge`: every shard store under `run_dir` into its run store, then the run files.

    With `strict`, raises `ShardsIncomplete` (after writing the files) when a shard is missing or
    unfinished, so the partial result is usable and a later merge completes it.
    """
    report = merge_stores(run_dir)
    store = RunStore(run_dir)
    try:
        report.files = write_run_files(store)
    finally:
        store.close()
    if strict and (report.missing or report.unfinished):
        raise ShardsIncomplete(report.missing, report.unfinished)
    return report


def _shard_session(run_dir: Path, spec: ShardSpec, backend: BackendConfig, command: str, show: bool) -> RunSession:
    seed_shard(run_dir, spec)
    session = RunSession(shard_dir(run_dir, spec), backend, f"{command} --shard {spec}", show, ExecutorConfig())
    session.executor = ShardFilter(session.executor, spec)
    return session


def _finish(session: RunSession) -> None:
    store = RunStore(session.run_dir)
    try:
        mark_finished(store)
    finally:
        store.close()


def _check_executor(executor: ExecutorConfig | None) -> None:
    if executor is not None and executor.kind != "local":
        raise ConfigError(f"--shard runs one shard in this process; the {executor.kind} executor shards by itself")


def run_profiles_shard(
    run_dir: str | Path,
    personas: list[Persona],
    config: ProfilesConfig,
    backend: BackendConfig,
    *,
    shard: ShardSpec,
    executor: ExecutorConfig | None = None,
    show_progress: bool = True,
    **options: Any,
) -> RunSession:
    """`profiles --shard i/N`: profiles for this shard's personas, into RUN/shards/<i>-of-<N>/."""
    _check_executor(executor)
    session = _shard_session(Path(run_dir), shard, backend, "profiles", show_progress)
    return profiles_on(session, personas, config, after=_finish, **options)


def run_synthesis_shard(
    run_dir: str | Path,
    loaded: list[LoadedSource],
    config: SynthesisConfig,
    backend: BackendConfig,
    *,
    shard: ShardSpec,
    executor: ExecutorConfig | None = None,
    show_progress: bool = True,
    **options: Any,
) -> RunSession:
    """`synthesize --shard i/N`: this shard's dialogues, paired with the run's merged characters."""
    _check_executor(executor)
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise ConfigError(
            f"{run_dir} has no merged characters yet: run `opencharacter merge --run {run_dir}` "
            "after the profiles shards, then synthesize"
        )
    session = _shard_session(run_dir, shard, backend, "synthesize", show_progress)
    return synthesis_on(session, loaded, config, after=_finish, selection=False, **options)
