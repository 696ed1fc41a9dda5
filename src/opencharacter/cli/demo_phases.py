"""The demo's phases: which one is running, roughly how long the rest takes here, and what each cost.

Estimates come from this machine's previous demo (saved in the cache directory), since the time
depends mostly on the CPU cores and on what else runs on them (8m38s on an idle 2-core machine,
39 min on a busy one). A first run says so instead of guessing.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from opencharacter.cli.report import console
from opencharacter.executors.processes import peak_rss_bytes
from opencharacter.fileio import write_json
from opencharacter.models.embedded import cache_dir
from opencharacter.train.memory import format_bytes
from opencharacter.train.progress import format_seconds

FIRST_RUN = "about 9 minutes on an idle 2-core machine; it scales with cores and load"


def timings_file() -> Path:
    return cache_dir() / "demo_timings.json"


@dataclass
class DemoPhases:
    """The demo's phases in order; `resuming` ones found their output from an earlier run on disk."""

    names: list[str]
    measured: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    previous: dict[str, float] = field(default_factory=dict)
    resuming: set[str] = field(default_factory=set)
    estimates: bool = True
    _started: float = 0.0
    _current: str = ""

    @classmethod
    def load(cls, names: list[str], resuming: set[str] | None = None, estimates: bool = True) -> DemoPhases:
        """`estimates`: False for another model than the embedded one, which the saved timings don't describe."""
        try:
            previous = json.loads(timings_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        known = {k: float(v) for k, v in previous.items() if isinstance(v, (int, float))}
        return cls(names, previous=known, resuming=set(resuming or ()), estimates=estimates)

    def start(self, name: str, what: str) -> None:
        self._current, self._started = name, time.monotonic()
        index = self.names.index(name) + 1
        estimate = f" · {self.estimate(name)}" if self.estimates else ""
        console.print(f"\n[bold]\\[{index}/{len(self.names)}] {name.capitalize()}[/]: {what}{estimate}")

    def done(self, peak_rss: int | None = None) -> None:
        self.measured[self._current] = time.monotonic() - self._started
        if peak_rss is not None:
            self.peaks[self._current] = peak_rss

    def estimate(self, name: str) -> str:
        """What the last run here says about this phase and the ones after it, true for any subset.

        A resuming phase (its output exists) took at most last time's time; the phases still to
        come are named, so "the rest" never means this phase alone.
        """
        rest = self.names[self.names.index(name) :]
        after = rest[1:]
        if name not in self.previous:
            if len(self.names) == len(ALL_PHASES) and name == self.names[0] and not self.resuming:
                return f"the demo takes {FIRST_RUN}"
            return f"no earlier timing of this phase here (the whole demo takes {FIRST_RUN})"
        took = format_seconds(self.previous[name])
        text = f"last time here this phase took {took}" + (" (it resumes now: less)" if name in self.resuming else "")
        if not after:
            return text + (", the last one" if len(self.names) > 1 else "")
        if not all(phase in self.previous for phase in after):
            return text + f"; {_names(after)} still to come"
        total = format_seconds(sum(self.previous[p] for p in rest))
        bound = "at most " if any(p in self.resuming for p in rest) else ""
        return text + f"; with {_names(after)} still to come, {bound}{total} in all"

    def summary(self) -> str:
        parts = []
        for name, seconds in self.measured.items():
            peak = f", peak {format_bytes(self.peaks[name])}" if name in self.peaks else ""
            parts.append(f"{name} {format_seconds(seconds)}{peak}")
        total = format_seconds(sum(self.measured.values()))
        largest = max([*self.peaks.values(), peak_rss_bytes()])
        return (
            f"time and peak memory (RSS) per phase: {'; '.join(parts)} (total {total}) · each phase ran in its "
            f"own process: the demo's peak is its largest, {format_bytes(largest)} "
            f"(+ {format_bytes(peak_rss_bytes())} for the command itself)"
        )

    def save(self) -> None:
        """Only phases measured from scratch: a resumed or interrupted one would make the next estimate wrong."""
        fresh = {name: seconds for name, seconds in self.measured.items() if name not in self.resuming}
        if not fresh:
            return
        path = timings_file()
        with contextlib.suppress(OSError):  # an estimate for next time is not worth failing the demo over
            write_json(path, {**self.previous, **fresh})


ALL_PHASES = ("synthesis", "training", "evaluation")


def _names(phases: list[str]) -> str:
    return phases[0] if len(phases) == 1 else ", ".join(phases[:-1]) + f" and {phases[-1]}"
