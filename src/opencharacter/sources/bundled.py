"""Bundled sample data written for this project: 52 personas, 32 LIMA-style instructions (8 multi-turn)
and 24 personal questions (what users ask a character about themselves, each with a plain first-person
answer for rewrite to put in a character's voice; none is an evaluation question)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_path(name: str) -> Path:
    """`personas.jsonl` (Persona Hub persona.jsonl shape), `instructions.jsonl` or
    `personal_questions.jsonl` (LIMA shape)."""
    return Path(str(resources.files("opencharacter.sources") / "samples" / name))
