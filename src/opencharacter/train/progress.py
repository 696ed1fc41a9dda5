"""Rate and time left for step-wise work (training steps, demo phases), from wall time so far."""

from __future__ import annotations

import time


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


class StepClock:
    """Steps done since `start_step` over the wall time since creation: the rate and the ETA.
    A resumed run starts at its checkpoint's step, so the rate counts only steps made here."""

    def __init__(self, start_step: int, total_steps: int, now: float | None = None) -> None:
        self.start_step, self.total = start_step, total_steps
        self.started = time.monotonic() if now is None else now

    def rate_and_eta(self, step: int, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.started
        done = step - self.start_step
        if done <= 0 or elapsed <= 0:
            return ""
        per_step = elapsed / done
        rate = f"{1 / per_step:.2f} steps/s" if per_step < 1 else f"{per_step:.1f} s/step"
        left = max(0, self.total - step) * per_step
        return f"{rate} · ETA {format_seconds(left)}"
