"""The demo's phases: which one is running, roughly how long the rest takes here, and what each cost.

Estimates come from this machine's previous demo (saved in the cache directory), since the time
depends mostly on the CPU cores and on what else runs on them (8m38s on an idle 2-core machine,
39 min on a busy one). A first run says so instead of guessing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from opencharacter.backends.embedded import cache_dir
from opencharacter.cli.report import console
from opencharacter.train.memory import format_bytes, peak_rss_bytes
from opencharacter.train.progress import format_seconds

FIRST_RUN = "about 9 minutes on an idle 2-core machine; it scales with cores and load"


def timings_file() -> Path:
    return cache_dir() / "demo_timings.json"


@dataclass
class DemoPhases:
    names: list[str]
    measured: dict[str, float] = field(default_factory=dict)
    previous: dict[str, float] = field(default_factory=dict)
    _started: float = 0.0
    _current: str = ""

    @classmethod
    def load(cls, names: list[str]) -> DemoPhases:
        try:
            previous = json.loads(timings_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        return cls(names, previous={k: float(v) for k, v in previous.items() if isinstance(v, (int, float))})

    def start(self, name: str, what: str) -> None:
        self._current, self._started = name, time.monotonic()
        index = self.names.index(name) + 1
        console.print(f"\n[bold]\\[{index}/{len(self.names)}] {name.capitalize()}[/]: {what} · {self._rest_hint(name)}")

    def done(self) -> None:
        self.measured[self._current] = time.monotonic() - self._started

    def _rest_hint(self, name: str) -> str:
        rest = self.names[self.names.index(name) :]
        if not all(phase in self.previous for phase in rest):
            return f"the demo takes {FIRST_RUN}"
        phase = format_seconds(self.previous[name])
        total = format_seconds(sum(self.previous[p] for p in rest))
        return f"last time here this phase took {phase}, the rest of the demo {total}"

    def summary(self) -> str:
        parts = [f"{name} {format_seconds(seconds)}" for name, seconds in self.measured.items()]
        total = format_seconds(sum(self.measured.values()))
        return f"time: {', '.join(parts)} (total {total}) · peak memory (RSS) {format_bytes(peak_rss_bytes())}"

    def save(self) -> None:
        """Only complete phases: a skipped or interrupted one would make the next estimate wrong."""
        path = timings_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**self.previous, **self.measured}, indent=2), encoding="utf-8")
        except OSError:
            pass  # an estimate for next time is not worth failing the demo over
