"""`opencharacter recipe`: does SFT on character-aligned synthetic data help on unseen characters, and does G beat R?

1. Personas are split (seeded) into training and held-out characters; held-out personas and their
   profiles never reach training data.
2. The teacher makes profiles and G/R dialogues for the training characters, and profiles for the
   held-out ones (separate run directories, so pairing can never pick a held-out character).
3. Filters, then one LoRA student per strategy.
4. The base student and each tuned student answer as the held-out characters: judge-free fidelity
   and light PersonaGym-style judging, with identical questions and score anchors for all models.
5. One table (`recipe/table.py`): base vs tuned per metric — both fidelities (embedding, lexical) and
   PersonaScore — deltas with bootstrap intervals, the issue-11 target verdict, the data and compute.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from opencharacter.config import RecipeConfig, TrainConfig
from opencharacter.errors import RunIncomplete
from opencharacter.executors.processes import peak_rss_bytes, run_phase
from opencharacter.export.run_files import PREFERENCE_PAIRS
from opencharacter.fileio import atomic_open
from opencharacter.hashing import content_hash
from opencharacter.models.loading import MODEL_META
from opencharacter.recipe.benchmark import benchmark_markdown, check_benchmark, score_benchmark
from opencharacter.recipe.phases import MadeData, evaluate_model, make_data, split_personas
from opencharacter.recipe.table import METRICS, render_markdown, target_verdict
from opencharacter.recipe.table import results_table as _table
from opencharacter.selection import dialogue_stage
from opencharacter.store import RunStore

_STUDENT_KEY = "recipe_key.txt"


class _Phases:
    """Runs the recipe's phases in their own processes and records what each took: wall time, the
    peak resident memory of its process (rank 0's for a launched student) and how many processes."""

    def __init__(self) -> None:
        self.record: dict[str, dict[str, Any]] = {}

    def run(self, name: str, target: Any, *args: Any) -> Any:
        step = time.monotonic()
        value, peak = run_phase(target, *args)
        self.add(name, time.monotonic() - step, peak, 1)
        return value

    def add(self, name: str, seconds: float, peak: int | None, processes: int | None, reused: bool = False) -> None:
        self.record[name] = {"seconds": round(seconds, 3), "peak_rss_bytes": peak, "processes": processes,
                             **({"reused": True} if reused else {})}  # fmt: skip


def run_recipe(config: RecipeConfig, quiet: bool = False) -> dict[str, Any]:
    """The whole experiment; raises RunIncomplete at the end (results written) if teacher items failed.

    The teacher's data, each student and each evaluation run in their own processes (memory, GPU
    memory included, is returned between them); students start as `train.launcher` says.
    """
    out = Path(config.out)
    check_benchmark(config)  # before any teacher call or training
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    phases = _Phases()
    made: MadeData = phases.run("data", make_data, config, quiet)
    timings: dict[str, float] = dict(made.seconds)
    filtered = made.filtered

    models: dict[str, Path] = {}
    trained: dict[str, Any] = {}
    for strategy in config.strategies:
        settings = config.train.model_copy(update={"strategies": [strategy], "seed": config.seed})
        models[strategy] = out / f"model-{strategy}"
        trained[strategy] = _student(settings, filtered, models[strategy], out, made.digest, phases)
    if config.dpo is not None:
        label = f"{config.dpo_from}+dpo"
        sft = models[config.dpo_from]
        # From a LoRA student: continue its adapter (the SFT model stays the reference). From a full
        # fine-tune: new LoRA adapters on the fine-tuned weights (with the adapters off, the reference).
        start = (
            {"model": str(sft), "init_adapter": None}
            if config.train.method == "full"
            else {"model": config.train.model, "init_adapter": str(sft)}
        )
        settings = config.dpo.model_copy(
            update={**start, "method": "dpo", "strategies": [config.dpo_from], "seed": config.seed,
                    "launcher": config.dpo.launcher or config.train.launcher}
        )  # fmt: skip
        # A DPO student is a function of its SFT student too: retrained whenever that one is.
        pairs = filtered / PREFERENCE_PAIRS
        digest = content_hash("dpo-data", (sft / _STUDENT_KEY).read_text(encoding="utf-8"),
                              hashlib.sha256(pairs.read_bytes()).hexdigest() if pairs.exists() else None)  # fmt: skip
        models[label] = out / f"model-{label}"
        trained[label] = _student(settings, filtered, models[label], out, digest, phases)
    if config.grpo is not None:
        label, settings, digest = _grpo_student(config, models[config.grpo_from], made.digest)
        models[label] = out / f"model-{label}"
        trained[label] = _student(settings, filtered, models[label], out, digest, phases)

    evals: dict[str, Any] = {}
    base_dir = out / "evals" / "base"
    for label, model in (("base", config.train.model), *((s, str(p)) for s, p in models.items())):
        evals[label] = phases.run(f"eval {label}", evaluate_model, config, label, model, quiet)
        timings[f"eval {label}"] = phases.record[f"eval {label}"]["seconds"]
    benchmark = None
    if config.eval.benchmark is not None:
        scored = {"base": config.train.model, **{s: str(p) for s, p in models.items()}}
        benchmark = phases.run("benchmark", score_benchmark, config, scored, out)
        timings["benchmark"] = phases.record["benchmark"]["seconds"]
    timings["total"] = time.monotonic() - started
    phases.add("recipe", timings["total"], peak_rss_bytes(), 1)  # the coordinator itself

    results = {
        "split": {"train_characters": made.train_characters, "held_out_characters": made.held_out_characters},
        "filters": made.filters,
        "training": trained,
        "usage": _usage(out / "data"),
        "timings_seconds": timings,
        "phases": phases.record,
        "table": (table := _table(evals, base_dir)),
        "effect": target_verdict(table),
        "evaluations": {label: str(out / "evals" / label) for label in evals},
        "benchmark": benchmark,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    with atomic_open(out / "results.md") as stream:
        stream.write(render_markdown(results) + benchmark_markdown(benchmark))
    if made.failed:
        raise RunIncomplete(made.failed, made.total)
    return results


def _grpo_student(config: RecipeConfig, sft: Path, data_digest: str) -> tuple[str, TrainConfig, str]:
    """The GRPO student's label, settings and key: it continues the SFT student of `grpo_from` (a LoRA
    one: its adapter; a full fine-tune: new adapters on it) on that strategy's prompts; a `judge`
    reward without its own judge gets the recipe's first judge (so changing the judge retrains)."""
    assert config.grpo is not None
    start = (
        {"model": str(sft), "init_adapter": None}
        if config.train.method == "full"
        else {"model": config.train.model, "init_adapter": str(sft)}
    )
    rewards = [
        spec.model_copy(update={"judge": config.judges[0].model_dump(mode="json")})
        if spec.name == "judge" and not spec.settings().get("judge") and config.judges
        else spec
        for spec in config.grpo.grpo.rewards
    ]
    grpo = config.grpo.grpo.model_copy(update={"rewards": rewards})
    update = {**start, "method": "grpo", "strategies": [config.grpo_from], "seed": config.seed, "grpo": grpo,
              "launcher": config.grpo.launcher or config.train.launcher}  # fmt: skip
    settings = config.grpo.model_copy(update=update)
    digest = content_hash("grpo-data", (sft / _STUDENT_KEY).read_text(encoding="utf-8"), data_digest)
    return f"{config.grpo_from}+grpo", settings, digest


def _student(
    settings: TrainConfig, data: Path, target: Path, out: Path, data_digest: str, phases: _Phases
) -> dict[str, Any]:
    """Train one student in its own processes (or reuse it when its settings and data are unchanged);
    what the table reports."""
    from opencharacter.train.launch import train_in_child

    step = time.monotonic()
    name = target.name.removeprefix("model-")
    evaluation = out / "evals" / name
    if _prepare_student(target, evaluation, _student_key(settings, data_digest)):
        meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
        trained = {key: meta.get(key) for key in ("steps", "final_train_loss", "final_validation_loss")}
        plan = meta.get("memory_plan") or {}
        phases.add(f"train {name}", time.monotonic() - step, meta.get("peak_rss_bytes"), plan.get("processes"), True)
        return {**trained, "dialogues": meta["train_examples"], "seconds": meta.get("seconds", 0.0)}
    result = train_in_child(settings, data, target, resume=True)  # from its last checkpoint, if it has one
    trained = {
        "dialogues": result.train_examples,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_validation_loss": result.final_validation_loss,
        "seconds": time.monotonic() - step,
    }
    phases.add(f"train {name}", trained["seconds"], result.peak_rss, result.plan.get("processes"))
    meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
    (target / MODEL_META).write_text(json.dumps({**meta, "seconds": trained["seconds"]}, indent=2))
    return trained


def _student_key(settings: TrainConfig, data_digest: str) -> str:
    """What a student is a function of: its training settings and the exact dialogues it learns from.

    Not how it is launched: moving from one process to eight GPUs (`train.launcher`) reuses a
    finished student, as a changed `concurrency` reuses teacher data.
    """
    return content_hash("recipe-student", settings.model_dump(mode="json", exclude={"launcher"}), data_digest)


def _prepare_student(target: Path, evaluation: Path, key: str) -> bool:
    """True when `target` already holds the finished student for `key` (a rerun reuses it).

    A student made from other settings or data is stale: it and its evaluation are removed, so a
    changed learning rate or filter retrains instead of silently reporting the old model.
    """
    stamp = target / _STUDENT_KEY
    if target.exists() and (not stamp.exists() or stamp.read_text(encoding="utf-8") != key):
        print(f"{target.name}: training settings or data changed since it was trained; retraining", file=sys.stderr)
        shutil.rmtree(target)
        shutil.rmtree(evaluation, ignore_errors=True)
    if (target / MODEL_META).exists():
        return True
    target.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key, encoding="utf-8")
    return False


def _usage(run: Path) -> dict[str, Any]:
    store = RunStore(run)
    try:
        usage = store.usage()
        return {
            "dialogues": store.count(dialogue_stage(store)),  # kept ones, when candidates were selected
            "characters": store.count("profiles"),
            "prompt_tokens": sum(u["prompt_tokens"] for u in usage.values()),
            "completion_tokens": sum(u["completion_tokens"] for u in usage.values()),
            "calls": sum(u["calls"] for u in usage.values()),
        }
    finally:
        store.close()


__all__ = ["METRICS", "_table", "render_markdown", "run_recipe", "split_personas"]
