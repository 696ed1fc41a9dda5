"""Time and peak memory (RSS) of the real `opencharacter demo`, per phase, measured from outside.

Runs the demo command as a subprocess and samples, every --every seconds, the summed RSS of its whole
process tree (the command and the phase processes it spawns: what the machine really has to hold at
once), attributing each sample to the phase the demo announced last ("[2/3] Training: …"). It also
reports the largest single-process peak (ru_maxrss of the waited-for children, as `/usr/bin/time -v`
shows it), and the demo's own end summary line.

    python bench/demo_memory.py                      # the full default demo (~9–17 min on 2 cores)
    python bench/demo_memory.py --small              # 3 personas, 3 instructions, 1 character each
    python bench/demo_memory.py --small -- --no-train

Extra demo options go after `--`. The run directory is a fresh temporary one unless --run is given.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

PHASE = re.compile(r"\[(\d+)/(\d+)\] (\w+):")


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process that just ended
            total += member.memory_info().rss
    return total


def gb(count: float) -> str:
    return f"{count / 2**30:.2f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="3 personas, 3 instructions, 1 character each")
    parser.add_argument("--run", type=Path, help="run directory (default: a fresh temporary one)")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("demo_args", nargs="*", help="more `opencharacter demo` options, after --")
    args = parser.parse_args()
    run = args.run or Path(tempfile.mkdtemp(prefix="demo-memory-")) / "demo"
    command = [sys.executable, "-m", "opencharacter", "demo", "--run", str(run)]
    if args.small:
        command += ["--personas", "3", "--instructions", "3", "--per-instruction", "1"]
    command += args.demo_args
    print("$", " ".join(command), flush=True)

    started = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    watched = psutil.Process(process.pid)
    phase = ["start-up"]
    peaks: dict[str, int] = {}
    spans: dict[str, list[float]] = {}
    summary: list[str] = []

    def sample() -> None:
        while process.poll() is None:
            name = phase[0]
            peaks[name] = max(peaks.get(name, 0), tree_rss(watched))
            time.sleep(args.every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stderr is not None
    for line in process.stderr:
        sys.stderr.write(line)
        if match := PHASE.search(line):
            now = time.monotonic() - started
            spans.setdefault(phase[0], [0.0, now])[1] = now
            phase[0] = match.group(3).lower()
            spans[phase[0]] = [now, now]
        if line.startswith("time and peak memory"):
            summary.append(line.strip())
    code = process.wait()
    sampler.join()
    end = time.monotonic() - started
    spans.setdefault(phase[0], [0.0, end])[1] = end
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    print(f"\nexit status {code}, wall {end:.0f} s, run directory {run}")
    print(f"{'phase':<12} {'wall':>8} {'peak RSS of the process tree':>30}")
    for name, (begin, finish) in spans.items():
        print(f"{name:<12} {finish - begin:>7.0f}s {gb(peaks.get(name, 0)):>30}")
    print(f"whole demo: tree peak {gb(max(peaks.values(), default=0))}; largest single process {gb(children_peak)}")
    for line in summary:
        print(f"demo's own summary: {line}")
    return code


if __name__ == "__main__":
    sys.exit(main())
