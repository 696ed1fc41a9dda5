"""Progress per stage: done/total, failed, generated tokens/s (this session) and ETA.

On a terminal it is a rich bar. Where stderr is not a terminal (CI logs, `| tee`, `nohup`, the
demo's phase processes under a pipe) a rich bar draws nothing at all until it stops, so a stage that
takes minutes on the embedded model looked hung. There it writes plain timestamped lines instead: one
when a stage starts, one every `line_interval` seconds while it runs (from a small thread, so a
batch that takes minutes still gets its lines) and one when it ends. Nothing with `enabled=False`
(--quiet).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from opencharacter.engine.engine import EngineStats


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainLines:
    """The log-file form of the bar: timestamped lines at a stage's start and end, and every `interval`."""

    def __init__(self, stats: EngineStats, console: Console, interval: float, prefix: str = "") -> None:
        self.stats, self.console, self.interval, self.prefix = stats, console, interval, prefix
        self._lock = threading.Lock()
        self._stage: str | None = None
        self._total = self._done = self._done_at_start = self._failed = 0
        self._started = self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, stage: str, total: int, completed: int) -> None:
        with self._lock:
            self._stage, self._total, self._done, self._done_at_start, self._failed = (
                stage, total, completed, completed, 0,
            )  # fmt: skip
            self._started = time.monotonic()
        self.line(f"{stage}: {total - completed} to do ({completed} of {total} already in the store)")
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="stage-progress", daemon=True)
            self._ticker.start()

    def advance(self, failed: int, count: int = 1) -> None:
        with self._lock:
            self._done, self._failed = self._done + count, failed

    def finish(self) -> None:
        with self._lock:
            stage, done, total, failed = self._stage, self._done, self._total, self._failed
            self._stage = None
            elapsed = time.monotonic() - self._started
        if stage is not None:
            failures = f", {failed} failed" if failed else ""
            self.line(f"{stage}: {done}/{total} done in {format_duration(elapsed)}{failures}")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None

    def status(self) -> str | None:
        """`generate 12/40 (30%) · 0.40/s · 85 tok/s · ETA 1m10s · failed 1`, or None between stages."""
        with self._lock:
            if self._stage is None:
                return None
            stage, done, total, failed = self._stage, self._done, self._total, self._failed
            made, elapsed = done - self._done_at_start, time.monotonic() - self._started
        text = f"{stage} {done}/{total}" + (f" ({100 * done // total}%)" if total else "")
        if made:
            rate = made / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            text += f" · {rate:.2f}/s · {self.stats.tokens_per_second():.0f} tok/s · ETA {format_duration(eta)}"
        else:
            text += f" · waiting for the first result ({format_duration(elapsed)})"
        return text + (f" · failed {failed}" if failed else "")

    def _tick(self) -> None:
        while not self._stop.wait(min(self.interval / 3, 5.0)):
            if time.monotonic() - self._last_line >= self.interval and (text := self.status()):
                self.line(text)

    def line(self, text: str) -> None:
        with self._lock:
            self._last_line = time.monotonic()
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"[{stamp}] {self.prefix}{text}", markup=False, highlight=False, soft_wrap=True)


class StageProgress:
    line_interval: float = 30.0
    """Seconds between two plain lines when stderr is not a terminal: a log stays readable, never silent."""

    def __init__(
        self, stats: EngineStats, console: Console | None = None, enabled: bool = True, prefix: str = ""
    ) -> None:
        self.stats = stats
        self.enabled = enabled
        console = console or Console(stderr=True)
        bar = enabled and console.is_terminal
        self._plain = PlainLines(stats, console, self.line_interval, prefix) if enabled and not bar else None
        self._progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:>7.1f} tok/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not bar,
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, stage: str, total: int, completed: int) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(stage, total=total, completed=completed, failed=0, rate=0.0)
        if self._plain:
            self._plain.start(stage, total, completed)

    def advance(self, failed: int, count: int = 1) -> None:
        """`count` more items finished (a chunk a rerun skipped is one update, not 256)."""
        if self._task is not None:
            self._progress.update(self._task, advance=count, failed=failed, rate=self.stats.tokens_per_second())
        if self._plain:
            self._plain.advance(failed, count)

    def finish(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, rate=self.stats.tokens_per_second())
        if self._plain:
            self._plain.finish()

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None
        if self._plain:
            self._plain.close()
