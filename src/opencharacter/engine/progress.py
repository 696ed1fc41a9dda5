"""A rich progress bar per stage: done/total, failed, generated tokens/s (this session) and ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from opencharacter.engine.engine import EngineStats


class StageProgress:
    def __init__(self, stats: EngineStats, console: Console | None = None, enabled: bool = True) -> None:
        self.stats = stats
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:>7.1f} tok/s"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, stage: str, total: int, completed: int) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(stage, total=total, completed=completed, failed=0, rate=0.0)

    def advance(self, failed: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=1, failed=failed, rate=self.stats.tokens_per_second())

    def finish(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, rate=self.stats.tokens_per_second())

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None
