"""One command on one run directory (lock, store, backend, engine, executor), and how it ends.

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
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opencharacter.backends import Backend, build_backend
from opencharacter.config import BackendConfig, ExecutorConfig, ModelPrice
from opencharacter.engine import Engine, EngineStats
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import ConfigError, Interrupted, RunIncomplete
from opencharacter.executors import Executor, ExecutorContext, StageResult, build_executor
from opencharacter.export.run_files import write_run_files
from opencharacter.store import RunStore
from opencharacter.store.lock import RunLock
from opencharacter.store.run_store import STORE_FILE

if TYPE_CHECKING:
    from opencharacter.filters import FilterReport
    from opencharacter.sources import LoadReport


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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


@dataclass
class RunSession:
    """A locked run directory with its store, the teacher backend, an engine and an executor."""

    run_dir: Path
    backend_config: BackendConfig
    command: str
    show_progress: bool = True
    executor_config: ExecutorConfig = field(default_factory=ExecutorConfig)
    create: bool = True
    """False for commands that need an existing run (synthesize): a missing one is an error, and
    nothing is created."""
    store: RunStore = field(init=False)
    backend: Backend = field(init=False)
    engine: Engine = field(init=False)
    progress: StageProgress = field(init=False)
    executor: Executor = field(init=False)
    results: list[StageResult] = field(default_factory=list)
    prices: dict[str, ModelPrice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.started_wall = time.time()
        self.started = time.monotonic()
        if not self.create and not (self.run_dir / STORE_FILE).exists():
            raise ConfigError(
                f"{self.run_dir} is not a run directory yet: "
                f"run `opencharacter profiles` first (with --out {self.run_dir})"
            )
        self._lock = RunLock(self.run_dir, self.command).acquire()
        try:
            self.store = RunStore(self.run_dir)
            try:
                self.backend = build_backend(self.backend_config)
                self._check_teacher()
            except BaseException:
                self.store.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self.engine = Engine(
            self.backend,
            self.store,
            concurrency=self.backend_config.concurrency,
            max_retries=self.backend_config.max_retries,
        )
        self.progress = StageProgress(self.engine.stats, enabled=self.show_progress)
        self.executor = build_executor(
            ExecutorContext(
                self.run_dir, self.store, self.backend_config, self.engine, self.executor_config, self.progress
            )
        )

    @property
    def stats(self) -> EngineStats:
        return self.executor.stats

    def _check_teacher(self) -> None:
        """A run directory is one teacher's dataset: resuming with another model would silently mix
        two models' answers (finished records are kept, new ones come from the new model)."""
        recorded = self.store.get_meta("teacher")
        decoding = self.backend.decoding
        if recorded is None:
            self.store.set_meta("teacher", self.backend.model_id)
            self.store.set_meta("decoding", decoding)
        elif recorded != self.backend.model_id:
            self.store.close()
            raise ConfigError(
                f"{self.run_dir} holds data made by {recorded}, not {self.backend.model_id}: "
                "use a new --out to make data with another model"
            )
        elif (before := self.store.get_meta("decoding")) != decoding:
            self.store.close()
            raise ConfigError(
                f"{self.run_dir} holds data {recorded} decoded another way "
                f"({before or 'an older version'}, now {decoding}): "
                "use a new --out to make data with this version"
            )

    def check_settings(self, key: str, settings: dict[str, Any], record: bool = True) -> None:
        """Refuse to add `key` records made with other settings than the ones this run holds.

        Record ids hash inputs only (a dialogue's id is its question, character and strategy), so
        a rerun with another prompt version or sampling would keep the old records and add
        new-recipe ones: a silently mixed dataset. Like a second teacher, that needs a new --out.
        """
        recorded = self.store.get_meta("settings", {})
        before = recorded.get(key)
        if before is not None and before != settings:
            old, new = _flatten(before), _flatten(settings)
            changed = [
                f"{name} {old.get(name)!r} → {new.get(name)!r}"
                for name in sorted(set(old) | set(new))
                if old.get(name) != new.get(name)
            ]
            raise ConfigError(
                f"{self.run_dir} holds {key} made with other settings ({'; '.join(changed)}): "
                "use a new --out to make data with these settings"
            )
        if before is None and record:
            recorded[key] = settings
            self.store.set_meta("settings", recorded)

    def use_prices(self, prices: Mapping[str, ModelPrice] | None) -> None:
        """Price this command's tokens in the summary, and keep the list with the run so the dataset
        card (rewritten by every later command) prices the whole run."""
        from opencharacter.engine.costs import record_prices

        self.prices = dict(prices or {})
        record_prices(self.store, self.prices)

    def command_cost(self) -> float | None:
        """US$ for the tokens this command spent, when the teacher has a price."""
        from opencharacter.engine.costs import price_of

        stats = self.stats
        return price_of(stats.prompt_tokens, stats.completion_tokens, self.prices.get(self.backend.model_id))

    def record_config(self, key: str, value: Any) -> None:
        history = self.store.get_meta("commands", [])
        # The key's *name* is recorded, never its value (BackendConfig cannot even hold a key).
        history.append({"command": self.command, key: value, "backend": self.backend_config.model_dump(mode="json")})
        self.store.set_meta("commands", history)

    def failure_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for result in self.results:
            reasons.update(result.reasons)
        return reasons

    def raise_if_incomplete(self) -> None:
        failed = sum(result.unfinished for result in self.results)
        if failed:
            raise RunIncomplete(failed, sum(result.total for result in self.results))

    def abandon(self) -> None:
        """Release the store and the lock of a session that never ran (its files are unchanged)."""
        self.store.close()
        self._lock.release()

    async def close(self) -> None:
        """Release everything and rewrite the run's files from the store (also after errors)."""
        try:
            self.progress.close()
            await self.executor.aclose()
            await self.backend.aclose()
            stats = self.stats
            self.store.add_session(
                self.command, self.started_wall, time.monotonic() - self.started, stats.new_calls, stats.cached_calls
            )
            write_run_files(self.store)
        finally:
            self.store.close()
            self._lock.release()


def execute(session: RunSession, steps: Callable[[], Awaitable[None]], reporter: Reporter | None = None) -> None:
    """Run `steps()` on the session, close it (files written), report; raise on a signal or fatal error."""
    reporter = reporter or Reporter()
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
