"""Time under faults: `opencharacter profiles` against a server where a fraction of calls go wrong.

A local OpenAI-compatible server (its own process) answers after a fixed latency; with
`--fault-rate 0.2`, 20% of its answers, drawn at random (fixed seed), are one of: HTTP 500, a
30 s hang, a truncated body, malformed JSON, schema-invalid output. The real CLI makes N profiles
once fault-free and once with faults; printed: wall time of each, their ratio, items failed.

    python bench/faults.py                              # 300 profiles, 500 ms latency, 20% faults
    python bench/faults.py --profiles 300 --latency 0.5 --hang 30
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = """
import sys
from opencharacter.serve.server import Faults, ScriptedResponder, run_server
faults = Faults(random_rate=float(sys.argv[2]), hang_seconds=float(sys.argv[3]), random_seed=1)
run_server(ScriptedResponder(latency=float(sys.argv[1]), faults=faults), "127.0.0.1", int(sys.argv[4]), "bench")
"""
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "personahub_sample.jsonl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency: float, rate: float, hang: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), str(rate), str(hang), str(port)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("bench server did not start")


def write_personas(path: Path, count: int) -> None:
    """`count` distinct personas: the shared Persona Hub rows, numbered when more are needed."""
    base = [json.loads(line)["persona"] for line in SHARED.read_text().splitlines() if line.strip()]
    rows = [f"{base[i % len(base)]} (#{i // len(base)})" for i in range(count)]
    path.write_text("".join(json.dumps({"persona": p}) + "\n" for p in rows))


def run_profiles(personas: Path, out: Path, url: str, extra: list[str]) -> tuple[float, int, str]:
    command = [sys.executable, "-m", "opencharacter", "profiles", "--personas", str(personas), "--out", str(out)]
    command += ["--backend", "openai", "--base-url", url, "--model", "bench", "-q", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    wall = time.perf_counter() - started
    failures = out / "failures.jsonl"
    failed = len(failures.read_text().splitlines()) if failures.exists() else 0
    summary = next((line for line in done.stderr.splitlines() if line.startswith("calls:")), done.stderr[-300:])
    return wall, failed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--hang", type=float, default=30.0)
    parser.add_argument("extra", nargs="*", help="extra CLI flags for `profiles` (after --)")
    args = parser.parse_args()
    print(
        f"\n## Faults: {args.profiles} profiles, latency {args.latency * 1000:.0f} ms, "
        f"{args.fault_rate:.0%} faulty (500, {args.hang:g} s hang, truncated, malformed, schema-invalid)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        personas = Path(tmp) / "personas.jsonl"
        write_personas(personas, args.profiles)
        walls = {}
        for rate in (0.0, args.fault_rate):
            process, url = start_server(args.latency, rate, args.hang)
            try:
                wall, failed, summary = run_profiles(personas, Path(tmp) / f"run-{rate}", url, args.extra)
            finally:
                process.kill()  # hung handlers would hold a graceful shutdown for a minute
                process.wait(10)
            walls[rate] = wall
            print(f"faults {rate:>4.0%}: wall {wall:6.2f}s, {failed} items failed · {summary}")
        print(f"ratio faulty / fault-free: {walls[args.fault_rate] / walls[0.0]:.2f}")


if __name__ == "__main__":
    main()
