"""Peak memory (RSS) of `opencharacter train` on CPU, before vs after the memory plan, in one session.

Each variant trains in its own process (peak RSS is per process) for a few optimizer steps: the
peak is reached in the first steps, since every step sees the same micro-batch shapes at worst.
A watchdog stops a variant whose RSS passes --cap (the old defaults need more than 20 GB at batch
8 × 1024 tokens: on a shared machine, do not let them try), and reports it as "> cap".

    python bench/train_memory.py                       # both profiles, old and new settings
    python bench/train_memory.py --profile demo --steps 2 --cap 6

Profiles: `demo` trains with the demo's settings (batch 4, max_length 384) on 48 dialogues;
`1000` uses `train`'s defaults (batch 8, max_length 1024) on 1,000 synthetic dialogues whose answers
run from 60 to 700 words, so most batches hold a sequence cut at max_length; `dpo` trains
`--method dpo` with the same defaults on 200 preference pairs of such answers (a pair is two
sequences: the plan gives one pair per pass, 8 accumulated).

    python bench/train_memory.py --profile dpo --only after --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

CHILD = """
import json, sys, time
from opencharacter.config import TrainConfig
from opencharacter.train.trainer import train
settings, data, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
started = time.process_time()
result = train(TrainConfig(**settings), data, out)
print(json.dumps({"peak_rss": result.peak_rss, "plan": result.plan, "steps": result.steps,
                  "cpu_s": time.process_time() - started}))
"""
BEFORE = {"chunked_loss": False, "gradient_checkpointing": False, "micro_batch_tokens": None}
PROFILES = {
    # As cli/demo.py trains (its micro-batch and checkpointing settings are the "after"; BEFORE overrides them).
    "demo": (
        {
            "epochs": 2,
            "batch_size": 4,
            "max_length": 384,
            "learning_rate": 5e-4,
            "eval_steps": 5,
            "micro_batch_tokens": 512,
            "gradient_checkpointing": True,
        },
        48,
    ),
    # No held-out characters: a validation pass over 100 long dialogues would cost more than the steps.
    "1000": ({"validation_characters": 0}, 1000),
    "dpo": ({"method": "dpo", "validation_characters": 0}, 200),
}


def make_dialogues(path: Path, count: int, seed: int = 0) -> Path:
    """Dialogues shaped like the recipe's: a character system prompt, a question, a long answer."""
    from opencharacter.prompts.system_prompt import render_system_prompt
    from opencharacter.sources.bundled import sample_path

    rows = [json.loads(line) for line in sample_path("instructions.jsonl").read_text("utf-8").splitlines()]
    personas = [json.loads(line)["persona"] for line in sample_path("personas.jsonl").read_text("utf-8").splitlines()]
    words = " ".join(r["conversations"][1] for r in rows).split()
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as stream:
        for index in range(count):
            profile = "Name: Sam. " + " ".join(rng.choice(words) for _ in range(rng.randint(120, 260)))
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(60, 700)))
            messages = [
                {"role": "system", "content": render_system_prompt(personas[index % len(personas)], profile)},
                {"role": "user", "content": rows[index % len(rows)]["conversations"][0]},
                {"role": "assistant", "content": answer},
            ]
            stream.write(json.dumps({"messages": messages, "character_id": f"c{index % 50}"}) + "\n")
    return path


def make_pairs(path: Path, count: int, seed: int = 0) -> Path:
    """Preference pairs from the same dialogues: the prompt, one long answer chosen, another rejected."""
    dialogues = make_dialogues(path.with_suffix(".dialogues.jsonl"), count * 2, seed)
    rows = [json.loads(line) for line in dialogues.read_text("utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as stream:
        for index in range(count):
            first, second = rows[2 * index], rows[2 * index + 1]
            pair = {
                "pair_id": f"p{index}",
                "question_id": f"q{index}",
                "character_id": first["character_id"],
                "strategy": "generate",
                "prompt": first["messages"][:2],
                "chosen": first["messages"][2]["content"],
                "rejected": second["messages"][2]["content"],
                "chosen_rank": 1,
                "rejected_rank": 4,
            }
            stream.write(json.dumps(pair) + "\n")
    return path


def run_variant(settings: dict, data: Path, out: Path, cap_bytes: int) -> dict:
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(settings), str(data), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watched, seen = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            seen = max(seen, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if seen > cap_bytes:
            child.kill()
            child.wait()
            return {"peak_rss": None, "over_cap": True, "wall_s": time.monotonic() - started}
        time.sleep(0.2)
    output = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        return {"error": f"exit {child.returncode}", "wall_s": time.monotonic() - started}
    return {**json.loads(output.strip().splitlines()[-1]), "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=[*PROFILES, "all"], default="all")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per variant")
    parser.add_argument("--cap", type=float, default=8.0, help="GB: stop a variant above this RSS")
    parser.add_argument("--only", choices=["before", "after", "both"], default="both")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="override the profile's batch: with 1, one step is one pass of the same 1 × max_length shape the "
        "default plan makes 8 times per step (the same peak, an eighth of the time)",
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; cap {args.cap} GB; {args.steps} steps per variant")
    with tempfile.TemporaryDirectory() as tmp:
        for name in PROFILES if args.profile == "all" else [args.profile]:
            settings, count = PROFILES[name]
            make = make_pairs if settings.get("method") == "dpo" else make_dialogues
            data = make(Path(tmp) / f"{name}.jsonl", count)
            variants = {"before": BEFORE, "after": {}}
            for label, extra in variants.items():
                if args.only not in ("both", label):
                    continue
                config = {**settings, **extra, "max_steps": args.steps, "save_steps": 1000}
                if args.batch_size:
                    config["batch_size"] = args.batch_size
                result = run_variant(config, data, Path(tmp) / f"{name}-{label}", int(args.cap * 2**30))
                peak = result.get("peak_rss")
                shown = (
                    f"{peak / 2**30:.2f} GB"
                    if peak
                    else (f"> {args.cap} GB (stopped)" if result.get("over_cap") else result.get("error"))
                )
                print(
                    f"{name:>5} dialogues={count} {label:<6} peak RSS {shown} · plan {result.get('plan')} · "
                    f"cpu {result.get('cpu_s', float('nan')):.0f} s · wall {result['wall_s']:.0f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
