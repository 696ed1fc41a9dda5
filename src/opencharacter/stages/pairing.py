"""Instruction × character pairing: `n` distinct characters per instruction, seeded and reproducible.

The draw for an instruction depends only on (seed, question id, the sorted character ids), so
adding instructions never reshuffles the pairs of the existing ones.
"""

from __future__ import annotations

import random

from opencharacter.errors import ConfigError
from opencharacter.hashing import content_hash
from opencharacter.records import Character, Instruction


def pair(
    instructions: list[Instruction], characters: list[Character], per_instruction: int, seed: int
) -> list[tuple[Instruction, list[Character]]]:
    if not characters:
        raise ConfigError("no characters in this run yet: run `opencharacter profiles` first")
    pool = sorted(characters, key=lambda c: c.character_id)
    count = min(per_instruction, len(pool))
    pairs = []
    for instruction in instructions:
        rng = random.Random(content_hash("pairing", seed, instruction.question_id))
        pairs.append((instruction, rng.sample(pool, count)))
    return pairs
