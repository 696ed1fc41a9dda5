"""Does the pipeline scale? The real CLI stages at 10k and 100k dialogues against a fast local server.

Each size runs, as subprocesses of this script, exactly what a user types:

    opencharacter profiles --personas P.jsonl --out RUN            (N/5 personas)
    opencharacter synthesize --strategy generate --instructions I  (N/6 instructions × 3 characters)
    opencharacter synthesize --strategy rewrite  --instructions I  (the same, rewritten)
    ... and then all three again on the finished run (the rerun: nothing left to do)

against an OpenAI-compatible server on 127.0.0.1 (its own process) that answers at once with a
valid profile JSON, rewrite JSON or a few hundred characters of text. For each command it prints
calls/s, the client's CPU ms per call (the child's rusage: robust on a loaded machine, unlike wall
time), the client's peak RSS; per size the store.sqlite size against the output JSONL and the rerun
time. Then `opencharacter filter` on the largest size's profiles (N/5: 20k at 100k), under a cap.
The last table gives ratios of the largest size against the smallest, measured in the same run.

Personas are the Persona Hub sample cycled and varied (so every one is a distinct character);
instructions are Alpaca-shaped and made up here.

    python bench/pipeline_scale.py                 # 10k and 100k dialogues
    python bench/pipeline_scale.py --quick         # 1k dialogues: a smoke run
    python bench/pipeline_scale.py --dialogues 2000 20000 --filter-cap 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Persona Hub samples beside the checkout (or named by OPENCHARACTER_BENCH_PERSONAS: a worktree has
# another parent), else the package's bundled samples.
PERSONAS = Path(
    os.environ.get("OPENCHARACTER_BENCH_PERSONAS")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "personahub_sample.jsonl"
)
if not PERSONAS.exists():
    PERSONAS = Path(__file__).resolve().parents[1] / "src" / "opencharacter" / "sources" / "samples" / "personas.jsonl"
PER_INSTRUCTION = 3
CONCURRENCY = 256

# The server: plain aiohttp, no opencharacter import, so its CPU is as small as a server's can be.
SERVER = r"""
import hashlib, json, random, sys
from aiohttp import web

WORDS = json.loads(sys.argv[2])

def text(seed, words):
    rng = random.Random(seed)
    out = " ".join(rng.choice(WORDS) for _ in range(words))
    return out[0].upper() + out[1:] + "."

def profile(seed):
    rng = random.Random(seed)
    return {
        "name": " ".join(w.capitalize() for w in rng.sample(WORDS, 2)),
        "age": rng.randint(18, 90),
        "gender": rng.choice(["female", "male", "non-binary"]),
        "race": rng.choice(["Asian", "Black", "White", "Latino", "Mixed"]),
        "birth_place": rng.choice(WORDS).capitalize() + " City",
        "appearance": text(seed + 1, 30),
        "general_experience": text(seed + 2, 60),
        "personality": text(seed + 3, 30),
    }

async def chat(request):
    payload = await request.json()
    messages = payload["messages"]
    seed = int(hashlib.blake2b(messages[-1]["content"].encode(), digest_size=8).hexdigest(), 16)
    schema = ((payload.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema is None:
        content = text(seed, 120)
    elif "answers" in schema.get("properties", {}):
        n = schema["properties"]["answers"]["minItems"]
        content = json.dumps({"answers": [text(seed + i, 120) for i in range(n)]})
    else:
        content = json.dumps(profile(seed))
    body = {
        "id": "x", "object": "chat.completion", "model": payload.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": sum(len(m["content"]) for m in messages) // 4,
                  "completion_tokens": len(content) // 4},
    }
    return web.json_response(body)

app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(words: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), json.dumps(words)])
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("bench server did not start")


def load_personas() -> list[str]:
    with PERSONAS.open(encoding="utf-8") as stream:
        return [json.loads(line)["persona"] for line in stream if line.strip()]


def write_inputs(
    folder: Path, personas: int, instructions: int, base: list[str], words: list[str]
) -> tuple[Path, Path]:
    """Distinct personas (each sample persona with a varied home and pastime) and instructions."""
    cities = [w.capitalize() for w in words[:97]]
    pastimes = words[97:]
    persona_file, instruction_file = folder / "personas.jsonl", folder / "instructions.jsonl"
    with persona_file.open("w", encoding="utf-8") as stream:
        for i in range(personas):
            persona = base[i % len(base)].rstrip(".")
            extra = f"{persona}, living in {cities[(i // len(base)) % len(cities)]}"
            extra += f", fond of {pastimes[(i // (len(base) * len(cities))) % len(pastimes)]} ({i})"
            stream.write(json.dumps({"persona": extra}) + "\n")
    rng = random.Random(0)
    with instruction_file.open("w", encoding="utf-8") as stream:
        for i in range(instructions):
            topic = " ".join(rng.sample(words, 3))
            instruction = f"Explain {topic} to a newcomer in {3 + i % 7} sentences (question {i})."
            output = " ".join(rng.choice(words) for _ in range(90)).capitalize() + "."
            stream.write(json.dumps({"instruction": instruction, "input": "", "output": output}) + "\n")
    return persona_file, instruction_file


@dataclass
class Step:
    name: str
    wall: float
    cpu: float
    rss_mb: float
    calls: int
    returncode: int

    def row(self) -> str:
        per_call = f"{(self.cpu - STARTUP_CPU) / self.calls * 1000:>10.2f}" if self.calls else f"{'-':>10}"
        rate = f"{self.calls / self.wall:>9.0f}" if self.calls else f"{'-':>9}"
        failed = "" if self.returncode == 0 else f"  (exit {self.returncode})"
        head = f"{self.name:<28}{self.calls:>8}{self.wall:>9.1f}"
        return f"{head}{rate}{per_call}{self.cpu:>9.1f}{self.rss_mb:>9.0f}{failed}"


HEADER = f"{'command':<28}{'calls':>8}{'wall s':>9}{'calls/s':>9}{'CPU ms/c':>10}{'CPU s':>9}{'RSS MB':>9}"
STARTUP_CPU = 0.0  # the CPU seconds of `opencharacter --help`, taken off before dividing by calls


def new_calls(run: Path) -> int:
    import sqlite3

    db = sqlite3.connect(run / "store.sqlite")
    try:  # closed at once: an open reader would keep the next command's WAL file alive
        row = db.execute("SELECT new_calls FROM sessions ORDER BY rowid DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return row[0] if row else 0


def run_cli(name: str, args: list[str], run: Path, timeout: float | None = None) -> Step:
    """One CLI command as a child process; CPU and peak RSS from that child's own rusage."""
    command = [sys.executable, "-m", "opencharacter", *args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = None if timeout is None else start + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode not in (0,) and not (deadline and wall >= timeout):
        print(stderr[-2000:], file=sys.stderr)
    calls = new_calls(run) if (run / "store.sqlite").exists() and args[0] != "filter" else 0
    return Step(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, calls, process.returncode)


def size_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


def one_size(dialogues: int, url: str, folder: Path, base: list[str], words: list[str]) -> dict:
    personas, instructions = dialogues // 5, dialogues // (2 * PER_INSTRUCTION)
    persona_file, instruction_file = write_inputs(folder, personas, instructions, base, words)
    run = folder / "run"
    backend = ["--backend", "openai", "--base-url", url, "--model", "bench", "--concurrency", str(CONCURRENCY), "-q"]
    commands = [
        ("profiles", ["profiles", "--personas", str(persona_file), "--out", str(run), *backend]),
        *(
            (
                f"synthesize {strategy}",
                [
                    *("synthesize", "--strategy", strategy, "--instructions", str(instruction_file)),
                    *("--out", str(run), "--per-instruction", str(PER_INSTRUCTION), *backend),
                ],
            )
            for strategy in ("generate", "rewrite")
        ),
    ]
    print(f"\n## {dialogues} dialogues ({personas} personas, {instructions} instructions × {PER_INSTRUCTION}, G and R)")
    print(HEADER)
    steps = []
    for name, args in commands:
        steps.append(run_cli(name, args, run))
        print(steps[-1].row(), flush=True)
    reruns = []
    for name, args in commands:
        reruns.append(run_cli(f"rerun {name}", args, run))
        print(reruns[-1].row(), flush=True)
    store = size_mb(run / "store.sqlite", run / "store.sqlite-wal")
    jsonl = size_mb(run / "characters.jsonl", run / "dialogues.jsonl", run / "failures.jsonl")
    lines = sum(1 for _ in (run / "dialogues.jsonl").open(encoding="utf-8"))
    print(f"dialogues.jsonl lines: {lines}")
    print(f"store.sqlite {store:.1f} MB vs output JSONL {jsonl:.1f} MB: {store / jsonl:.2f}×")
    print(f"rerun of the finished run (all three commands): {sum(r.wall for r in reruns):.1f} s wall")
    synth = [s for s in steps if s.name.startswith("synthesize")]
    return {
        "run": run,
        "steps": steps,
        "reruns": reruns,
        "store_ratio": store / jsonl,
        "rss": max(s.rss_mb for s in steps),
        "synth_cpu_per_call": sum(s.cpu - STARTUP_CPU for s in synth) / max(1, sum(s.calls for s in synth)),
        "profiles_cpu_per_call": (steps[0].cpu - STARTUP_CPU) / max(1, steps[0].calls),
        "rerun": sum(r.wall for r in reruns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quick", action="store_true", help="one size of 1,000 dialogues (a smoke run)")
    parser.add_argument("--filter-cap", type=float, default=300.0, help="seconds before `filter` is stopped")
    parser.add_argument("--skip-filter", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run directories under this folder")
    args = parser.parse_args()
    sizes = [1000] if args.quick else sorted(args.dialogues)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} CPUs")
    global STARTUP_CPU
    STARTUP_CPU = run_cli("startup", ["--help"], Path(os.devnull)).cpu
    print(f"startup CPU (opencharacter --help): {STARTUP_CPU * 1000:.0f} ms, subtracted from CPU ms per call")
    base = load_personas()
    words = sorted({w.strip(".,;:'\"()").lower() for p in base for w in p.split() if w.isascii() and len(w) > 2})
    process, url = start_server(words)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pipeline-scale-", dir=args.keep))
    try:
        results = {}
        for dialogues in sizes:
            folder = root / f"n{dialogues}"
            folder.mkdir()
            results[dialogues] = one_size(dialogues, url, folder, base, words)
        if not args.skip_filter:
            largest = results[sizes[-1]]
            profiles = largest["steps"][0].calls
            print(f"\n## filter: near-duplicate profiles and dialogue rules on {profiles} profiles")
            print(HEADER)
            step = run_cli("filter", ["filter", "--run", str(largest["run"])], largest["run"], args.filter_cap)
            timed_out = step.wall >= args.filter_cap
            print(step.row() + (f"  (stopped at the {args.filter_cap:.0f} s cap)" if timed_out else ""))
        if len(sizes) > 1:
            small, large = results[sizes[0]], results[sizes[-1]]
            print(f"\n## {sizes[-1]} against {sizes[0]} dialogues")
            print(f"peak RSS: {large['rss']:.0f} MB vs {small['rss']:.0f} MB: {large['rss'] / small['rss']:.2f}×")
            print(
                f"CPU ms per call, synthesize: {large['synth_cpu_per_call'] * 1000:.2f} vs "
                f"{small['synth_cpu_per_call'] * 1000:.2f}; profiles: {large['profiles_cpu_per_call'] * 1000:.2f} vs "
                f"{small['profiles_cpu_per_call'] * 1000:.2f}"
            )
            print(f"rerun: {large['rerun']:.1f} s vs {small['rerun']:.1f} s")
            print(f"store / JSONL: {large['store_ratio']:.2f}× vs {small['store_ratio']:.2f}×")
    finally:
        process.terminate()
        process.wait(10)
        if args.keep is None:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
