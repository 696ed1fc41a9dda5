"""Local executor vs Ray executor on one machine, against a local OpenAI-compatible server.

    PYTHONPATH=src python bench/ray_executor.py --personas 2000 --latency 0.05 --workers 2

Each configuration runs `opencharacter profiles` in a fresh process (so Ray starts and stops inside
the measured time, as it does for a user) into a fresh run directory, then once more as a resume
(nothing to do). The total requests in flight are the same for both executors (`--in-flight`,
split evenly over the Ray workers), so the difference is the executor's: Ray's start-up, shipping
items to workers, the shard stores and the merge. It prints wall seconds, calls per second and
whether the output files are byte-identical to the local run's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opencharacter.serve.server import ScriptedResponder, serve_in_thread

JOBS = ["baker", "nurse", "pilot", "teacher", "welder", "farmer", "chemist", "poet", "judge", "diver"]
PLACES = ["Lagos", "Lima", "Oslo", "Pune", "Quito", "Riga", "Seoul", "Tunis", "Utrecht", "Vienna"]
HOBBIES = ["chess", "birding", "salsa", "pottery", "sailing", "karaoke", "origami", "running", "baking", "go"]


def write_personas(path: Path, count: int) -> None:
    rows = (
        {"persona": f"A {job} from {place} who loves {hobby} (#{index})"}
        for index, (job, place, hobby) in enumerate(
            (JOBS[i % 10], PLACES[i // 10 % 10], HOBBIES[i // 100 % 10]) for i in range(count)
        )
    )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def run(personas: Path, out: Path, url: str, extra: list[str]) -> float:
    command = [
        sys.executable, "-m", "opencharacter", "profiles", "--personas", str(personas), "--out", str(out),
        "--backend", "openai", "--base-url", url, "--model", "teacher", "-q", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per request")
    parser.add_argument("--in-flight", type=int, default=64, help="requests in flight, in total")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(ScriptedResponder(latency=args.latency)) as url:
        root = Path(tmp)
        personas = root / "personas.jsonl"
        write_personas(personas, args.personas)
        configs = [("local", ["--concurrency", str(args.in_flight)])] + [
            (f"ray x{w}", ["--executor", "ray", "--workers", str(w), "--concurrency", str(args.in_flight // w)])
            for w in args.workers
        ]
        print(f"{args.personas} profiles, server latency {args.latency * 1000:.0f} ms, {args.in_flight} in flight")
        print(f"{'executor':<10} {'wall s':>7} {'calls/s':>8} {'rerun s':>8}  files = local")
        reference = None
        for name, extra in configs:
            out = root / name.replace(" ", "")
            wall = run(personas, out, url, extra)
            rerun = run(personas, out, url, extra)
            files = {f: (out / f).read_bytes() for f in ("characters.jsonl", "failures.jsonl")}
            reference = reference or files
            print(f"{name:<10} {wall:>7.1f} {args.personas / wall:>8.0f} {rerun:>8.1f}  {files == reference}")


if __name__ == "__main__":
    main()
