"""The original answers that rewrite dialogues were made from, found again through the run's own history.

A dialogue keeps only its `question_id` (the content hash of the instruction's turns), not the
answers it rewrote, so the copy check re-reads the instruction files that `synthesize` / `run`
recorded in the store (`meta.commands`) and matches them by that hash. A file that has moved is
reported, never silently skipped: the caller counts the rewrites it could not check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.store import RunStore


@dataclass
class Originals:
    answers: dict[str, list[str]] = field(default_factory=dict)
    """question_id → the original assistant turns, in order."""
    missing: list[str] = field(default_factory=list)
    """Recorded instruction files that could not be read again."""


def recorded_sources(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Instruction sources (path, format, limit, name) from the store's command history, deduplicated."""
    sources: list[dict[str, Any]] = []
    for command in commands:
        for key in ("synthesis", "pipeline"):
            recorded = command.get(key)
            if not isinstance(recorded, dict):
                continue
            for item in recorded.get("instructions") or []:
                source = {"path": item} if isinstance(item, str) else dict(item)
                if isinstance(source.get("path"), str) and source not in sources:
                    sources.append(source)
    return sources


def load_originals(store: RunStore, question_ids: set[str]) -> Originals:
    from opencharacter.errors import OpenCharacterError
    from opencharacter.sources import load_instructions

    found = Originals()
    if not question_ids:
        return found
    for source in recorded_sources(store.get_meta("commands", [])):
        path = Path(source["path"])
        try:
            instructions, _ = load_instructions(
                path, fmt=source.get("format") or "auto", skip_invalid=True, source_name=source.get("name")
            )
        except (OSError, OpenCharacterError):
            found.missing.append(str(path))
            continue
        for instruction in instructions:
            if instruction.question_id in question_ids:
                found.answers[instruction.question_id] = instruction.answers
    return found
