"""Evaluation progress that is never silent for minutes, on a terminal or in a log file.

The pipeline's stage progress (a rich bar on a terminal; timestamped lines every `interval` seconds
elsewhere, including while the first result of a phase is still loading the model), with lines
marked `eval ·` and a `note` for steps that have no items (loading the embedder, ranking answers).
An embedded-model evaluation once printed "Evaluating …" and then nothing for ~12 minutes.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from opencharacter.engine.progress import StageProgress

if TYPE_CHECKING:
    from opencharacter.engine.engine import EngineStats


class EvalProgress(StageProgress):
    """The stage bar on a terminal; elsewhere, `eval ·` lines every `interval` seconds."""

    def __init__(
        self,
        stats: EngineStats,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 15.0,
    ) -> None:
        self.line_interval = interval
        self._console = Console(file=stream or sys.stderr)
        super().__init__(stats, console=self._console, enabled=enabled, prefix="eval · ")

    @property
    def lines(self) -> bool:
        """True where progress is written as plain lines (stderr is not a terminal)."""
        return self._plain is not None

    def note(self, text: str) -> None:
        """One line for a step without items; shown on a terminal too."""
        if self._plain is not None:
            self._plain.line(text)
        elif self.enabled:
            self._console.print(f"[dim]{text}[/]")

    def status(self) -> str | None:
        """`answers 12/40 (30%) · 0.40/s · … · ETA 1m10s · failed 1`, or None between phases."""
        return self._plain.status() if self._plain is not None else None
