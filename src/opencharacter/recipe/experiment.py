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

from opencharacter.config import InstructionSource, PersonaSource, RecipeConfig, TrainConfig
from opencharacter.errors import RunIncomplete
from opencharacter.eval.runner import evaluate
from opencharacter.eval.sources import load_run_characters
from opencharacter.export.run_files import DIALOGUES, PREFERENCE_PAIRS
from opencharacter.fileio import atomic_open
from opencharacter.filters import apply_filters
from opencharacter.hashing import content_hash
from opencharacter.models.loading import MODEL_META
from opencharacter.pipeline import load_instruction_sources, make_profiles, select, synthesize
from opencharacter.pipeline.session import RunSession, execute
from opencharacter.recipe.table import METRICS, render_markdown, target_verdict
from opencharacter.recipe.table import results_table as _table
from opencharacter.records import Persona
from opencharacter.selection import dialogue_stage
from opencharacter.sources import load_personas
from opencharacter.store import RunStore

_STUDENT_KEY = "recipe_key.txt"


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
        if name == "data":
            # Recorded as `synthesize` records it: the filters find the rewrites' original answers
            # through it (without it the rewrite-copies-original check was skipped in every recipe).
            sources = [source.model_dump(mode="json") for source, _, _ in loaded]
            session.record_config("synthesis", {"instructions": sources, **config.synthesis.model_dump(mode="json")})

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
        settings = config.train.model_copy(update={"strategies": [strategy], "seed": config.seed})
        models[strategy] = out / f"model-{strategy}"
        trained[strategy] = _student(settings, filtered, models[strategy], out, data_digest)
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
            update={**start, "method": "dpo", "strategies": [config.dpo_from], "seed": config.seed}
        )
        # A DPO student is a function of its SFT student too: retrained whenever that one is.
        pairs = filtered / PREFERENCE_PAIRS
        digest = content_hash("dpo-data", (sft / _STUDENT_KEY).read_text(encoding="utf-8"),
                              hashlib.sha256(pairs.read_bytes()).hexdigest() if pairs.exists() else None)  # fmt: skip
        models[label] = out / f"model-{label}"
        trained[label] = _student(settings, filtered, models[label], out, digest)
    if config.grpo is not None:
        label, settings, digest = _grpo_student(config, models[config.grpo_from], data_digest)
        models[label] = out / f"model-{label}"
        trained[label] = _student(settings, filtered, models[label], out, digest)

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
        "table": (table := _table(evals, base_dir)),
        "effect": target_verdict(table),
        "evaluations": {label: str(out / "evals" / label) for label in evals},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    with atomic_open(out / "results.md") as stream:
        stream.write(render_markdown(results))
    if incomplete is not None:
        raise incomplete
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
    update = {**start, "method": "grpo", "strategies": [config.grpo_from], "seed": config.seed, "grpo": grpo}
    settings = config.grpo.model_copy(update=update)
    digest = content_hash("grpo-data", (sft / _STUDENT_KEY).read_text(encoding="utf-8"), data_digest)
    return f"{config.grpo_from}+grpo", settings, digest


def _student(settings: TrainConfig, data: Path, target: Path, out: Path, data_digest: str) -> dict[str, Any]:
    """Train one student (or reuse it when its settings and data are unchanged); what the table reports."""
    from opencharacter.train.trainer import train

    step = time.monotonic()
    evaluation = out / "evals" / target.name.removeprefix("model-")
    if _prepare_student(target, evaluation, _student_key(settings, data_digest)):
        meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
        trained = {key: meta.get(key) for key in ("steps", "final_train_loss", "final_validation_loss")}
        return {**trained, "dialogues": meta["train_examples"], "seconds": meta.get("seconds", 0.0)}
    result = train(settings, data, target, resume=True)  # from its last checkpoint, if it has one
    trained = {
        "dialogues": result.train_examples,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_validation_loss": result.final_validation_loss,
        "seconds": time.monotonic() - step,
    }
    meta = json.loads((target / MODEL_META).read_text(encoding="utf-8"))
    (target / MODEL_META).write_text(json.dumps({**meta, "seconds": trained["seconds"]}, indent=2))
    return trained


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
            "dialogues": store.count(dialogue_stage(store)),  # kept ones, when candidates were selected
            "characters": store.count("profiles"),
            "prompt_tokens": sum(u["prompt_tokens"] for u in usage.values()),
            "completion_tokens": sum(u["completion_tokens"] for u in usage.values()),
            "calls": sum(u["calls"] for u in usage.values()),
        }
    finally:
        store.close()


__all__ = ["METRICS", "_table", "render_markdown", "run_recipe", "split_personas"]
