"""One command on one run directory, and how it ends.

A `RunSession` is made of parts that each do one thing: `SessionResources` (the lock, the store, the
teacher backend, the engine, the progress display and the executor: acquired together, released
in reverse order), `RunIdentity` (the run's teacher and settings, checked against the command's),
`Pricing` and `StageResults`. Constructing a session does no I/O; `open()` (or `with`) acquires the
resources, and a failure half-way releases what it had taken, so no caller needs a
`try/except BaseException` around it.

`execute` runs a command's steps in an event loop and ends every command the same way, whether
it came from the CLI, `run`, `demo`, `recipe` or the Python API:
- the output files are rewritten from the store whatever happened (a killed run is resumable);
- SIGINT or SIGTERM cancels the calls in flight, then the files and the summary, then
  `Interrupted` (exit 130 / 143);
- a `FatalBackendError` cancels the calls in flight and propagates once the files are written
  (exit 1, one line);
- `raise_if_incomplete` turns items that ended as failures into `RunIncomplete` (exit 3), after
  the summary, so a script can trust the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opencharacter.backends import Backend, build_backend
from opencharacter.config import BackendConfig, ExecutorConfig, ModelPrice
from opencharacter.engine import Engine, EngineStats
from opencharacter.engine.costs import Pricing
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import Interrupted
from opencharacter.executors import Executor, ExecutorContext, build_executor
from opencharacter.executors.base import StageResults
from opencharacter.export.run_files import write_run_files
from opencharacter.store import RunStore
from opencharacter.store.identity import RunIdentity, flatten
from opencharacter.store.layout import existing_run
from opencharacter.store.lock import RunLock

if TYPE_CHECKING:
    from opencharacter.filters import FilterReport
    from opencharacter.sources import LoadReport

_flatten = flatten  # the name this module had for it


class Reporter:
    """What a run tells its user. The library's default says nothing; the CLI's prints (cli/report.py)."""

    def loads(self, reports: list[LoadReport]) -> None:
        """Inputs read: kept, duplicates, invalid records skipped."""

    def summary(self, session: RunSession) -> None:
        """Per-stage outcomes, calls and tokens, the commonest failure reasons."""

    def filtered(self, target: Path, report: FilterReport) -> None:
        """What the filters kept and removed."""

    def note(self, text: str) -> None:
        """One line of information (an export written, …)."""


@dataclass
class SessionResources:
    """What an open session holds, acquired in `open` and released in reverse order."""

    lock: RunLock
    store: RunStore
    backend: Backend
    engine: Engine
    progress: StageProgress
    executor: Executor

    @classmethod
    def open(
        cls,
        run_dir: Path,
        command: str,
        backend_config: BackendConfig,
        executor_config: ExecutorConfig,
        show_progress: bool,
    ) -> SessionResources:
        """Lock, store, backend (its teacher checked against the run's), engine, executor; on any
        failure, what was acquired so far is released before the error propagates."""
        with contextlib.ExitStack() as undo:
            lock = RunLock(run_dir, command).acquire()
            undo.callback(lock.release)
            store = RunStore(run_dir)
            undo.callback(store.close)
            backend = build_backend(backend_config)
            RunIdentity(store).teacher(backend.model_id, backend.decoding)
            engine = Engine(
                backend, store, concurrency=backend_config.concurrency, max_retries=backend_config.max_retries
            )
            progress = StageProgress(engine.stats, enabled=show_progress)
            undo.callback(progress.close)
            executor = build_executor(
                ExecutorContext(run_dir, store, backend_config, engine, executor_config, progress)
            )
            undo.pop_all()  # everything acquired: the session owns it now
        return cls(lock, store, backend, engine, progress, executor)

    def release(self) -> None:
        """Store and lock, without writing files (for a session that never ran)."""
        try:
            self.progress.close()
        finally:
            try:
                self.store.close()
            finally:
                self.lock.release()


class RunSession:
    """A command on a run directory: its resources, its run identity, its pricing and its results.

    `with RunSession(...) as session:` opens it (or `open()`; an attribute that needs the resources,
    such as `store` or `executor`, opens it on first use, as sessions always did); `execute` runs
    the steps and closes it, writing the run files. Leaving the `with` block of a session that was
    never executed releases it without touching its files.
    """

    def __init__(
        self,
        run_dir: str | Path,
        backend_config: BackendConfig,
        command: str,
        show_progress: bool = True,
        executor_config: ExecutorConfig | None = None,
        create: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.backend_config = backend_config
        self.command = command
        self.show_progress = show_progress
        self.executor_config = executor_config or ExecutorConfig()
        self.create = create
        """False for commands that need an existing run (synthesize): a missing one is an error, and
        nothing is created."""
        self.results = StageResults()
        self.pricing = Pricing()
        self.started_wall = time.time()
        self.started = time.monotonic()
        self._resources: SessionResources | None = None
        self._identity: RunIdentity | None = None
        self._finished = False

    # -- lifetime ---------------------------------------------------------------------------------
    def open(self) -> RunSession:
        if self._finished:
            raise RuntimeError(f"the {self.command} session on {self.run_dir} is closed")
        if self._resources is None:
            if not self.create:
                existing_run(self.run_dir)
            self._resources = SessionResources.open(
                self.run_dir, self.command, self.backend_config, self.executor_config, self.show_progress
            )
            self._identity = RunIdentity(self._resources.store, self.run_dir)
            self.started_wall, self.started = time.time(), time.monotonic()
        return self

    def __enter__(self) -> RunSession:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._finished:
            self.abandon()

    def abandon(self) -> None:
        """Release the store and the lock of a session that never ran (its files are unchanged)."""
        if self._finished:
            return
        self._finished = True
        if self._resources is not None:
            self._resources.release()

    async def close(self) -> None:
        """Release everything and rewrite the run's files from the store (also after errors).

        The backend and executor stay readable afterwards (the summary reads their counters)."""
        resources = self._open_resources()
        self._finished = True
        try:
            resources.progress.close()
            await resources.executor.aclose()
            await resources.backend.aclose()
            stats = resources.executor.stats
            resources.store.add_session(
                self.command, self.started_wall, time.monotonic() - self.started, stats.new_calls, stats.cached_calls
            )
            write_run_files(resources.store)
        finally:
            resources.store.close()
            resources.lock.release()

    def _open_resources(self) -> SessionResources:
        if self._resources is None:
            self.open()
        assert self._resources is not None
        return self._resources

    # -- the parts, as the attributes a session always had ------------------------------------------
    @property
    def store(self) -> RunStore:
        return self._open_resources().store

    @property
    def backend(self) -> Backend:
        return self._open_resources().backend

    @property
    def engine(self) -> Engine:
        return self._open_resources().engine

    @property
    def progress(self) -> StageProgress:
        return self._open_resources().progress

    @property
    def executor(self) -> Executor:
        return self._open_resources().executor

    @executor.setter
    def executor(self, executor: Executor) -> None:
        """A wrapper around the session's executor (a shard's filter, a test's spy)."""
        self._open_resources().executor = executor

    @property
    def identity(self) -> RunIdentity:
        self._open_resources()
        assert self._identity is not None
        return self._identity

    @property
    def stats(self) -> EngineStats:
        return self.executor.stats

    @property
    def prices(self) -> dict[str, ModelPrice]:
        return self.pricing.prices

    # -- what commands ask of it --------------------------------------------------------------------
    def check_settings(self, key: str, settings: dict[str, Any], record: bool = True) -> None:
        """Refuse to add `key` records made with other settings than the ones this run holds (see
        `store/identity.py`: record ids hash inputs only, so that would be a silently mixed dataset)."""
        self.identity.settings(key, settings, record=record)

    def use_prices(self, prices: Mapping[str, ModelPrice] | None) -> None:
        """Price this command's tokens in the summary, and keep the list with the run."""
        self.pricing.use(self.store, prices)

    def command_cost(self) -> float | None:
        """US$ for the tokens this command spent, when the teacher has a price."""
        stats = self.stats
        return self.pricing.cost(self.backend.model_id, stats.prompt_tokens, stats.completion_tokens)

    def record_config(self, key: str, value: Any) -> None:
        history = self.store.get_meta("commands", [])
        # The key's *name* is recorded, never its value (BackendConfig cannot even hold a key).
        history.append({"command": self.command, key: value, "backend": self.backend_config.model_dump(mode="json")})
        self.store.set_meta("commands", history)

    def failure_reasons(self) -> Counter[str]:
        return self.results.failure_reasons()

    def raise_if_incomplete(self) -> None:
        self.results.raise_if_incomplete()


def execute(session: RunSession, steps: Callable[[], Awaitable[None]], reporter: Reporter | None = None) -> None:
    """Run `steps()` on the session, close it (files written), report; raise on a signal or fatal error."""
    reporter = reporter or Reporter()
    session.open()
    caught: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        closing = False

        def on_signal(number: int) -> None:
            if not caught:
                caught.append(number)
            if not closing:  # a signal while the files are written waits for them
                task.cancel()

        installed = []
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(number, on_signal, number)
                installed.append(number)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
                pass
        try:
            try:
                await steps()
            except asyncio.CancelledError:
                if not caught:
                    raise
                task.uncancel()
            finally:
                closing = True
                await session.close()
        finally:
            for number in installed:
                loop.remove_signal_handler(number)

    asyncio.run(main())
    reporter.summary(session)
    if caught:
        raise Interrupted(caught[0])
