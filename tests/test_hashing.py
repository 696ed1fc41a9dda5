"""Record ids and cache keys are built by fast paths that must give the bytes of the general recipe."""

from __future__ import annotations

import hashlib
import random

from opencharacter.hashing import HASH_VERSION, canonical_json, content_hash
from opencharacter.records import ChatMessage, Instruction

ALPHABET = 'abcXYZ019 "\\\n\t\x00\x1f\u00e9\u2028\u2029\ud7ff\U0001f600/<>&'


def _general(*parts):
    return hashlib.sha256(canonical_json([HASH_VERSION, *parts]).encode("utf-8")).hexdigest()[:16]


def test_the_fast_content_hash_is_the_canonical_one_for_any_text_and_number():
    rng = random.Random(0)
    for _ in range(2000):
        parts = [
            rng.choice([lambda: "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12))),
                        lambda: rng.randrange(-10**12, 10**12), lambda: True, lambda: None, lambda: 1.5,
                        lambda: [rng.randrange(3), "x"], lambda: {"b": 1, "a": "é"}])()
            for _ in range(rng.randrange(1, 5))
        ]  # fmt: skip
        assert content_hash(*parts) == _general(*parts), parts


def test_an_instructions_id_is_the_hash_of_its_dumped_turns():
    rng = random.Random(1)
    for _ in range(300):
        turns = [
            ChatMessage(
                role="user" if n % 2 == 0 else "assistant", content="".join(rng.choice(ALPHABET) for _ in range(20))
            )
            for n in range(rng.randrange(1, 5))
        ]
        assert Instruction.make_id(turns) == _general("instruction", [t.model_dump() for t in turns])


def test_ids_made_before_the_fast_paths_are_unchanged():
    """Fixed values: a dialogue id, a pairing seed and an instruction id as main computed them."""
    assert content_hash("dialogue", "0123456789abcdef", "fedcba9876543210", "generate") == _general(
        "dialogue", "0123456789abcdef", "fedcba9876543210", "generate"
    )
    turns = [ChatMessage(role="user", content="Hi, who are you?"), ChatMessage(role="assistant", content="Ines.")]
    assert Instruction.make_id(turns) == "25afd293569578de"
