"""Instruction × character pairing: `n` distinct characters per instruction, seeded and reproducible.

An instruction's first draw depends only on (seed, question id, the sorted character ids), so
adding instructions never reshuffles the pairs of the existing ones. Adding *characters* would
(the pool changes), so a run records each instruction's pairing the first time it is made
(`InstructionPairing`, in the store) and reuses it: a grown pool keeps the earlier pairs and adds
none; a larger `per_instruction` extends a recorded pairing, keeping its first characters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from opencharacter.errors import ConfigError
from opencharacter.hashing import content_hash
from opencharacter.records import Record

STAGE = "pairings"


class InstructionPairing(Record):
    """The characters drawn for one instruction, in draw order (the store keeps it per run)."""

    question_id: str
    character_ids: list[str]


def check_pool(pool_size: int, per_instruction: int) -> None:
    if pool_size == 0:
        raise ConfigError("no characters in this run yet: run `opencharacter profiles` first")
    if per_instruction > pool_size:
        raise ConfigError(
            f"--per-instruction {per_instruction} asks for more distinct characters than the {pool_size} "
            "this run has: make more profiles first, or lower --per-instruction"
        )


def draw(question_id: str, pool: Sequence[str], count: int, seed: int, kept: Sequence[str] = ()) -> list[str]:
    """`count` distinct ids from `pool` (sorted ids) for one instruction, keeping `kept` first.

    A fresh draw is exactly the pairing earlier versions made, so existing runs resume unchanged.
    Extending a kept pairing samples the same way, skipping the ids it already has; both are
    O(count), not O(pool), per instruction.
    """
    if len(kept) >= count:
        return list(kept[:count])
    if not kept:
        return random.Random(content_hash("pairing", seed, question_id)).sample(pool, count)
    have = set(kept)
    extra = random.Random(content_hash("pairing-extend", seed, question_id, len(kept)))
    picked = [c for c in extra.sample(pool, min(len(pool), count + len(kept))) if c not in have]
    return [*kept, *picked[: count - len(kept)]]
