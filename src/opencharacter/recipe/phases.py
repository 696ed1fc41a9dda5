"""The recipe's phases that run in their own processes: the teacher's data and each evaluation.

Why: the recipe chains a teacher (often an in-process vLLM engine holding most of a GPU), several
students and an evaluation per model. In one process each leaves its memory behind (CUDA caches,
allocator arenas, an engine that never quite lets go), so the next one starts on a full GPU. Each
phase here is a module-level function that `executors.processes.run_phase` runs in a spawned child:
what it returns is small and picklable, and its memory goes back to the OS when it ends. Students
are trained by `train.launch.train_in_child`, alone or as the ranks of torchrun / `accelerate launch`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from opencharacter.config import RecipeConfig
from opencharacter.errors import ConfigError


class MadeData(BaseModel):
    """What the data phase hands the rest of the recipe: the split, the filtered run and its digest."""

    train_characters: int
    held_out_characters: int
    filters: dict[str, Any]
    filtered: Path
    digest: str
    """sha256 of the filtered dialogues: every student's key includes it."""
    failed: int
    """Teacher items that could not be made (the recipe still runs on the rest, and reports them)."""
    total: int
    seconds: dict[str, float]


def split_personas(personas: list[Any], held_out: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded split into training and held-out characters (at least two of each)."""
    from opencharacter.hashing import content_hash

    ranked = sorted(personas, key=lambda p: content_hash("recipe-split", seed, p.character_id))
    count = max(2, round(held_out * len(personas)))  # fidelity needs at least two held-out characters
    if len(personas) - count < 2:
        raise ConfigError(f"{len(personas)} personas are too few to hold out {count} and still train")
    return ranked[count:], ranked[:count]


def make_data(config: RecipeConfig, quiet: bool) -> MadeData:
    """Personas split, teacher data for the training characters, profiles for the held-out ones, filters."""
    from opencharacter.export.run_files import DIALOGUES
    from opencharacter.filters import apply_filters
    from opencharacter.pipeline import load_instruction_sources
    from opencharacter.sources import load_personas

    started = time.monotonic()
    source = config.personas
    personas, _ = load_personas(source.path, fmt=source.format, column=source.column, limit=source.limit)
    train_personas, held_personas = split_personas(personas, config.held_out, config.seed)
    loaded = load_instruction_sources(config.instructions, skip_invalid=False)
    out = Path(config.out)
    failed, total = _teacher(config, train_personas, held_personas, loaded, out, quiet)
    seconds = {"data": time.monotonic() - started}
    step = time.monotonic()
    filtered, report = apply_filters(out / "data", config.filters)
    seconds["filters"] = time.monotonic() - step
    return MadeData(
        train_characters=len(train_personas),
        held_out_characters=len(held_personas),
        filters=report.as_dict(),
        filtered=filtered,
        digest=hashlib.sha256((filtered / DIALOGUES).read_bytes()).hexdigest(),
        failed=failed,
        total=total,
        seconds=seconds,
    )


def _teacher(config: RecipeConfig, train_personas, held_personas, loaded, out: Path, quiet: bool) -> tuple[int, int]:
    """Teacher data for the training characters, profiles for the held-out ones (separate run
    directories, so pairing can never pick a held-out character); (failed, total) items."""
    from opencharacter.pipeline import make_profiles, select, synthesize
    from opencharacter.pipeline.session import RunSession, execute

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
    return failed, total


def evaluate_model(config: RecipeConfig, label: str, model: str, quiet: bool) -> dict[str, Any]:
    """One model answers as the held-out characters; its summary. Students reuse the base's anchors
    (identical questions and score anchors for every model)."""
    from opencharacter.eval.runner import evaluate
    from opencharacter.eval.sources import load_run_characters

    out = Path(config.out)
    held = load_run_characters(out / "held_out")
    backend = config.student_backend.model_copy(update={"model": model})
    base = out / "evals" / "base"
    result = evaluate(
        out / "evals" / label, held, None, backend, list(config.judges), config.eval,
        show_progress=not quiet, reuse_from=None if label == "base" else base,
    )  # fmt: skip
    return dict(result.summary)


__all__ = ["MadeData", "evaluate_model", "make_data", "split_personas"]
