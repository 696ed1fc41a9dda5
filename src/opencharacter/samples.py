"""Bundled sample data written for this project: 52 personas and 32 LIMA-style instructions (8 multi-turn)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_path(name: str) -> Path:
    """`personas.jsonl` (Persona Hub persona.jsonl shape) or `instructions.jsonl` (LIMA shape)."""
    return Path(str(resources.files("opencharacter.sources") / "samples" / name))
