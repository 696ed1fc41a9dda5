"""Evaluation progress that is never silent for minutes, on a terminal or in a log file.

On a terminal the stage bar (done/total, failed, tok/s, ETA) is drawn as for the pipeline. Where
stderr is not a terminal (CI logs, `nohup`, a notebook), a rich bar draws nothing until it stops,
which made an embedded-model evaluation print "Evaluating …" and then nothing for ~12 minutes. There,
a plain line per phase and then one every `interval` seconds says done/total, rate and ETA —
including while the first result of a phase is still loading the model.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from opencharacter.engine.progress import StageProgress

if TYPE_CHECKING:
    from opencharacter.engine.engine import EngineStats


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class EvalProgress(StageProgress):
    """The stage bar on a terminal; elsewhere, timestamped lines from a small ticker thread."""

    def __init__(
        self,
        stats: EngineStats,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 15.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self._console = Console(file=self.stream)
        terminal = self._console.is_terminal
        self.lines = enabled and not terminal
        super().__init__(stats, console=self._console, enabled=enabled and terminal)
        self.interval = interval
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._total = self._done = self._done_at_start = self._failed = 0
        self._started = self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the run_stage interface -----------------------------------------------------------------
    def start(self, stage: str, total: int, completed: int) -> None:
        super().start(stage, total, completed)
        if not self.lines:
            return
        with self._lock:
            self._phase, self._total, self._done, self._done_at_start, self._failed = (
                stage, total, completed, completed, 0,
            )  # fmt: skip
            self._started = time.monotonic()
        self._line(f"{stage}: {total - completed} to do ({completed} of {total} already in the store)")
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="eval-progress", daemon=True)
            self._ticker.start()

    def advance(self, failed: int) -> None:
        super().advance(failed)
        if self.lines:
            with self._lock:
                self._done, self._failed = self._done + 1, failed

    def finish(self) -> None:
        super().finish()
        if self.lines and self._phase is not None:
            with self._lock:
                phase, done, total, failed = self._phase, self._done, self._total, self._failed
                self._phase = None
            elapsed = _duration(time.monotonic() - self._started)
            self._line(f"{phase}: {done}/{total} done in {elapsed}" + (f", {failed} failed" if failed else ""))

    def close(self) -> None:
        super().close()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None

    # -- phases that are not a stage (loading a model, embedding answers) -------------------------
    def note(self, text: str) -> None:
        """One line for a step without items; shown on a terminal too."""
        if self.lines:
            self._line(text)
        elif self.enabled:
            self._console.print(f"[dim]{text}[/]")

    # -- internals -----------------------------------------------------------------------------------
    def status(self) -> str | None:
        """`answers 12/40 (30%) · 0.40/s · ETA 1m10s · failed 1`, or None between phases."""
        with self._lock:
            if self._phase is None:
                return None
            phase, done, total, failed = self._phase, self._done, self._total, self._failed
            made, elapsed = done - self._done_at_start, time.monotonic() - self._started
        percent = f" ({100 * done // total}%)" if total else ""
        text = f"{phase} {done}/{total}{percent}"
        if made:
            rate = made / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            text += f" · {rate:.2f}/s · ETA {_duration(eta)}"
        else:
            text += f" · waiting for the first result ({_duration(elapsed)})"
        return text + (f" · failed {failed}" if failed else "")

    def _tick(self) -> None:
        while not self._stop.wait(self.interval / 3):
            if time.monotonic() - self._last_line >= self.interval and (text := self.status()):
                self._line(text)

    def _line(self, text: str) -> None:
        with self._lock:
            self._last_line = time.monotonic()
        print(f"[{time.strftime('%H:%M:%S')}] eval · {text}", file=self.stream, flush=True)
