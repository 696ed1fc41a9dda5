"""`opencharacter recipe`: does SFT on character-aligned synthetic data help on unseen characters, and does G beat R?

1. Personas are split (seeded) into training and held-out characters; held-out personas and their
   profiles never reach training data.
2. The teacher makes profiles and G/R dialogues for the training characters, and profiles for the
   held-out ones (separate run directories, so pairing can never pick a held-out character).
3. Filters, then one LoRA student per strategy.
4. The base student and each tuned student answer as the held-out characters: judge-free fidelity
   and light PersonaGym-style judging, with identical questions and score anchors for all models.
5. One table: base vs tuned per metric, deltas with bootstrap intervals, and the data and compute.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from opencharacter.backends.model_loading import MODEL_META
from opencharacter.config import InstructionSource, PersonaSource, RecipeConfig, TrainConfig
from opencharacter.errors import RunIncomplete
from opencharacter.eval.fidelity import reciprocal_ranks
from opencharacter.eval.runner import evaluate
from opencharacter.eval.scores import bootstrap_delta
from opencharacter.eval.sources import load_run_characters
from opencharacter.export.run_files import DIALOGUES
from opencharacter.fileio import atomic_open
from opencharacter.filters import apply_filters
from opencharacter.hashing import content_hash
from opencharacter.pipeline import load_instruction_sources, make_profiles, select, synthesize
from opencharacter.records import Persona
from opencharacter.session import RunSession, execute
from opencharacter.sources import load_personas
from opencharacter.store import RunStore

_STUDENT_KEY = "recipe_key.txt"
METRICS = ("PersonaScore", "Expected Action", "Toxicity Control", "Linguistic Habits", "Persona Consistency",
           "Action Justification")  # fmt: skip


def split_personas(personas: list[Persona], held_out: float, seed: int) -> tuple[list[Persona], list[Persona]]:
    ranked = sorted(personas, key=lambda p: content_hash("recipe-split", seed, p.character_id))
    count = max(2, round(held_out * len(personas)))  # fidelity needs at least two held-out characters
    if len(personas) - count < 2:
        from opencharacter.errors import ConfigError

        raise ConfigError(f"{len(personas)} personas are too few to hold out {count} and still train")
    return ranked[count:], ranked[:count]


def _make_data(
    config: RecipeConfig, train_personas, held_personas, loaded, out: Path, quiet: bool
) -> RunIncomplete | None:
    """Teacher data for the training characters, profiles for the held-out ones; failed items are
    reported at the end (the experiment still runs on what was made)."""
    failed = total = 0
    for name, personas in (("data", train_personas), ("held_out", held_personas)):
        session = RunSession(out / name, config.teacher, f"recipe:{name}", not quiet, config.executor)

        async def steps(session: RunSession = session, name: str = name, personas=personas) -> None:
            await make_profiles(session, personas, config.profiles)
            if name == "data":
                for _, instructions, _ in loaded:
                    await synthesize(session, instructions, list(config.strategies), config.synthesis)
                await select(session, config.synthesis)  # synthesis.candidates > 1: keep the best

        execute(session, steps)
        failed += sum(result.unfinished for result in session.results)
        total += sum(result.total for result in session.results)
    return RunIncomplete(failed, total) if failed else None


def run_recipe(config: RecipeConfig, quiet: bool = False) -> dict[str, Any]:
    """The whole experiment; raises RunIncomplete at the end (results written) if teacher items failed."""
    from opencharacter.train.trainer import train

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    src: PersonaSource = config.personas
    personas, _ = load_personas(src.path, fmt=src.format, column=src.column, limit=src.limit)
    train_personas, held_personas = split_personas(personas, config.held_out, config.seed)
    sources: list[InstructionSource] = config.instructions
    loaded = load_instruction_sources(sources, skip_invalid=False)
    incomplete = _make_data(config, train_personas, held_personas, loaded, out, quiet)
    timings["data"] = time.monotonic() - started

    step = time.monotonic()
    filtered, filter_report = apply_filters(out / "data", config.filters)
    timings["filters"] = time.monotonic() - step

    models: dict[str, Path] = {}
    trained: dict[str, Any] = {}
    data_digest = hashlib.sha256((filtered / DIALOGUES).read_bytes()).hexdigest()  # once, for every student
    for strategy in config.strategies:
        step = time.monotonic()
        settings = config.train.model_copy(update={"strategies": [strategy], "seed": config.seed})
        target = out / f"model-{strategy}"
        models[strategy] = target
        if _prepare_student(target, out / "evals" / strategy, _student_key(settings, data_digest)):
            meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
            trained[strategy] = {key: meta.get(key) for key in ("steps", "final_train_loss", "final_validation_loss")}
            trained[strategy].update(dialogues=meta["train_examples"], seconds=meta.get("seconds", 0.0))
            continue
        result = train(settings, filtered, target, resume=True)  # from its last checkpoint, if it has one
        trained[strategy] = {
            "dialogues": result.train_examples,
            "steps": result.steps,
            "final_train_loss": result.final_train_loss,
            "final_validation_loss": result.final_validation_loss,
            "seconds": time.monotonic() - step,
        }
        meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
        (target / MODEL_META).write_text(json.dumps({**meta, "seconds": trained[strategy]["seconds"]}, indent=2))

    held = load_run_characters(out / "held_out")
    evals: dict[str, Any] = {}
    base_dir = out / "evals" / "base"
    for label, model in (("base", config.train.model), *((s, str(p)) for s, p in models.items())):
        step = time.monotonic()
        backend = config.student_backend.model_copy(update={"model": model})
        result = evaluate(
            out / "evals" / label, held, None, backend, list(config.judges), config.eval,
            show_progress=not quiet, reuse_from=None if label == "base" else base_dir,
        )  # fmt: skip
        evals[label] = result.summary
        timings[f"eval {label}"] = time.monotonic() - step
    timings["total"] = time.monotonic() - started

    results = {
        "split": {"train_characters": len(train_personas), "held_out_characters": len(held_personas)},
        "filters": filter_report.as_dict(),
        "training": trained,
        "usage": _usage(out / "data"),
        "timings_seconds": timings,
        "table": _table(evals, base_dir),
        "evaluations": {label: str(out / "evals" / label) for label in evals},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    with atomic_open(out / "results.md") as stream:
        stream.write(render_markdown(results))
    if incomplete is not None:
        raise incomplete
    return results


def _student_key(settings: TrainConfig, data_digest: str) -> str:
    """What a student is a function of: its training settings and the exact dialogues it learns from."""
    return content_hash("recipe-student", settings.model_dump(mode="json"), data_digest)


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
            "dialogues": store.count("dialogues"),
            "characters": store.count("profiles"),
            "prompt_tokens": sum(u["prompt_tokens"] for u in usage.values()),
            "completion_tokens": sum(u["completion_tokens"] for u in usage.values()),
            "calls": sum(u["calls"] for u in usage.values()),
        }
    finally:
        store.close()


def _per_persona(summary: dict[str, Any], metric: str) -> dict[str, float]:
    return {p: s[metric] for p, s in summary["per_persona"].items() if metric in s}


def _table(evals: dict[str, dict[str, Any]], base_dir: Path) -> list[dict[str, Any]]:
    base = evals["base"]
    rows = []
    base_rr = reciprocal_ranks(base_dir)
    for label, summary in evals.items():
        row: dict[str, Any] = {"model": label}
        for metric in METRICS:
            row[metric] = summary["scores"][metric]["mean"]
            if label != "base":
                row[f"{metric} delta"] = bootstrap_delta(_per_persona(base, metric), _per_persona(summary, metric))
        fidelity = summary["fidelity"]
        row["fidelity top-1"] = fidelity.get("top1")
        row["fidelity MRR"] = fidelity.get("mrr")
        row["fidelity chance MRR"] = fidelity.get("chance_mrr")
        if label != "base":
            row["fidelity MRR delta"] = bootstrap_delta(base_rr, reciprocal_ranks(base_dir.parent / label))
        row["excluded verdicts"] = summary["excluded_verdicts"]
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_markdown(results: dict[str, Any]) -> str:
    lines = ["# Recipe results: base vs tuned students on held-out characters", ""]
    header = ["model", "fidelity MRR", "fidelity top-1", *METRICS, "excluded verdicts"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["table"]:
        cells = [row["model"]]
        for metric in header[1:]:
            cell = _fmt(row.get(metric))
            delta = row.get(f"{metric} delta")
            if delta is not None:
                cell += f" ({delta[0]:+.2f} [{delta[1]:+.2f}, {delta[2]:+.2f}])"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    chance = results["table"][0].get("fidelity chance MRR")
    usage, split = results["usage"], results["split"]
    lines += [
        "",
        f"Deltas are against the base student, with 95% bootstrap intervals over held-out characters. "
        f"Chance fidelity MRR: {_fmt(chance)}.",
        "",
        "## Data and compute",
        "",
        f"- characters: {split['train_characters']} for training, {split['held_out_characters']} held out",
        f"- teacher: {usage['calls']} calls, {usage['prompt_tokens']} prompt + {usage['completion_tokens']} "
        f"completion tokens, {usage['dialogues']} dialogues",
        f"- filters: {results['filters']['dialogues_out']} of {results['filters']['dialogues_in']} dialogues kept; "
        f"removed: {results['filters']['removed']}",
        *(
            f"- student {s}: {t['dialogues']} dialogues, {t['steps']} steps, {t['seconds']:.0f} s, "
            f"final loss {_fmt(t['final_train_loss'])} (validation {_fmt(t['final_validation_loss'])})"
            for s, t in results["training"].items()
        ),
        "- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_seconds"].items()),
        "",
    ]
    return "\n".join(lines)
