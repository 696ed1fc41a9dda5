"""Run one phase (a demo or recipe step) in a fresh child process, so its memory goes back to the OS when it ends.

Measured on the embedded model (notes/hour.md, bench/demo_memory.py): in one process the demo peaked
at 5.7 GB, because evaluation (base, tuned and judge models, MiniLM) ran on top of what synthesis and
training left behind (allocator arenas, the trainer's reference cycles, torch's caches). A child per
phase starts each one from a clean slate and hands everything back when it exits; the parent only
imports the CLI, so the demo's peak is that of its largest phase.

The contract of an in-process call is kept: the phase's return value comes back; an
`OpenCharacterError`, a disk-full `OSError` or any other picklable exception is raised again in the
parent (exit codes 1/2/3 as usual, the child's traceback attached as a note); Ctrl-C or SIGTERM
reaches the child (the terminal signals the whole process group; a signal sent to the parent alone
is forwarded) and ends the demo with 130/143 once the child has saved what it had.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from opencharacter.errors import Interrupted, OpenCharacterError


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far.

    On Linux from /proc (VmHWM): `ru_maxrss` is carried over fork + exec, so a freshly spawned
    phase process would report its parent's peak (measured: 2.35 GB for a synthesis phase that a
    2.35 GB test process had spawned). Elsewhere `ru_maxrss` (macOS reports bytes).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PhaseFailed(OpenCharacterError):
    """A phase's process died or raised something that cannot cross a process boundary."""

    exit_code = 1


def crossing(exc: Exception) -> Exception:
    """`exc` if it pickles (ours all do), else a PhaseFailed that names it: what a child sends back."""
    try:
        pickle.dumps(exc)
    except Exception:
        return PhaseFailed(f"{type(exc).__name__}: {exc}")
    return exc


def ending(code: int) -> str:
    """How a child that sent no result ended, from its exit status (negative: the signal)."""
    if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return "killed by signal 9 — out of memory?"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _child(connection: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # A shell that starts a job in the background may leave SIGINT ignored, which exec keeps: the
    # parent handles both signals itself, so the phase must too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        outcome: tuple[str, Any, str] = ("ok", target(*args), "")
    except KeyboardInterrupt:
        outcome = ("interrupted", signal.SIGINT, "")
    except Interrupted as exc:
        outcome = ("interrupted", exc.signal_number, "")
    except Exception as exc:
        outcome = ("error", crossing(exc), traceback.format_exc())
    connection.send((*outcome, peak_rss_bytes()))
    connection.close()


@contextmanager
def _forwarding(child_pid: Callable[[], int | None]) -> Iterator[list[int]]:
    """While the block runs, SIGINT/SIGTERM sent to this process are recorded (the list yielded) and
    passed on to the child that `child_pid` names (None: not started or already ended)."""
    caught: list[int] = []

    def forward(number: int, _frame: Any) -> None:
        # The terminal's Ctrl-C reaches the child too (same process group); a second SIGINT is
        # harmless there (the pipeline's handler is idempotent, training and evaluation just stop).
        caught.append(number)
        pid = child_pid()
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_phase(target: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """`target(*args)` in a spawned child; returns (its result, the child's peak RSS in bytes).

    `target` must be importable (a module-level function) and its arguments and result picklable.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy the parent's pages and threads
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, target, args), name="opencharacter-phase")

    def alive() -> int | None:
        return process.pid if process.pid is not None and process.exitcode is None else None

    with _forwarding(alive) as caught:
        try:
            process.start()
            sender.close()
            if caught:  # a signal while it started: pass it on now
                os.kill(process.pid, caught[0])
            message = None
            while message is None and (process.is_alive() or receiver.poll()):
                if receiver.poll(0.5):
                    try:
                        message = receiver.recv()
                    except EOFError:
                        break
            process.join()
        finally:
            receiver.close()
    if message is None:
        code = process.exitcode or 0
        if caught or -code in (signal.SIGINT, signal.SIGTERM):
            raise Interrupted(caught[0] if caught else -code)
        raise PhaseFailed(f"the {getattr(target, '__name__', 'phase')} process ended without a result ({ending(code)})")
    kind, value, text, peak = message
    if kind == "interrupted":
        raise Interrupted(int(value))
    if caught:  # the signal came as the phase finished: its work is saved, the demo still stops
        raise Interrupted(caught[0])
    if kind == "error":
        if text:
            value.add_note(f"in the phase's process:\n{text.rstrip()}")
        raise value
    return value, int(peak)


def run_command(argv: list[str]) -> int:
    """`argv` as a child process (a launcher such as torchrun, which can only start a command), with
    SIGINT/SIGTERM passed on as `run_phase` does; returns its exit status. A signal raises
    `Interrupted` once the child has ended (and saved what it had)."""
    process: subprocess.Popen[bytes] | None = None

    def alive() -> int | None:
        return process.pid if process is not None and process.poll() is None else None

    with _forwarding(alive) as caught:
        process = subprocess.Popen(argv)
        if caught:
            os.kill(process.pid, caught[0])
        code = process.wait()
    if caught or -code in (signal.SIGINT, signal.SIGTERM):
        raise Interrupted(caught[0] if caught else -code)
    return code


__all__ = ["PhaseFailed", "crossing", "ending", "peak_rss_bytes", "run_command", "run_phase"]
