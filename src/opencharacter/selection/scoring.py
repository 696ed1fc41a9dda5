"""Pure selection logic: which candidate is best and worst, which pairs fall below chance, and
which distractors a pair is ranked among. No model here, so it is tested with plain numbers."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from opencharacter.hashing import content_hash
from opencharacter.records import ChatMessage, Dialogue, PreferencePair, Record

SELECTION_VERSION = 1
"""Bump when the scoring changes (embedder, name removal, ranking): every pair is then re-scored."""


class PairSelection(Record):
    """What the selection decided for one pair, and the fingerprint of everything that shaped it, so
    a rerun re-scores only pairs whose candidates, distractors or selection settings changed."""

    pair_id: str
    fingerprint: str
    chosen: str | None
    """dialogue_id of the kept candidate; None when the pair was dropped below chance."""
    best_rank: int
    first_rank: int | None
    """Rank of candidate 0 (what k = 1 would have kept); None when candidate 0 failed."""
    ranked: int
    """Profiles ranked (own + distractors)."""
    candidates: int
    """Candidates scored (fewer than k when some failed)."""


@dataclass(frozen=True)
class Scored:
    dialogue: Dialogue
    sort_key: str
    rank: int
    margin: float
    copy_rate: float = 0.0
    """Share of the answer's word trigrams found in its own profile (`eval/copying.py`)."""
    copy_penalty: float = 0.0

    @property
    def score(self) -> float:
        """Reciprocal rank of the own character, less the copy penalty times the copy rate: with no
        penalty it orders candidates exactly as their ranks do."""
        return 1 / self.rank - self.copy_penalty * self.copy_rate

    @property
    def order(self) -> tuple[float, float, int]:
        """Lower is better: the score first, then a wider margin, then the earlier candidate."""
        return (-self.score, -self.margin, self.dialogue.candidate)


def chance_mrr(ranked: int) -> float:
    """Expected reciprocal rank of a random ranking of `ranked` profiles: H(n) / n."""
    return sum(1 / k for k in range(1, ranked + 1)) / ranked


def below_chance(rank: int, ranked: int) -> bool:
    return 1 / rank <= chance_mrr(ranked)


def distractors(pair_id: str, character_id: str, pool: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` other characters of the run (all of them when fewer), drawn from the sorted `pool`
    with a generator seeded by the pair: the same pair gets the same distractors on every rerun."""
    if len(pool) <= count + 1:
        return [c for c in pool if c != character_id]
    rng = random.Random(content_hash("selection-distractors", seed, pair_id))
    drawn = [c for c in rng.sample(pool, count + 1) if c != character_id]
    return sorted(drawn[:count])


def best_and_worst(scored: Sequence[Scored]) -> tuple[Scored, Scored]:
    ordered = sorted(scored, key=lambda s: s.order)
    return ordered[0], ordered[-1]


def preference(pair_id: str, best: Scored, worst: Scored) -> PreferencePair | None:
    """Best vs worst, when the best really scores better (equal scores teach nothing; with no copy
    penalty, a better score is a better rank).

    The prompt is the chosen dialogue up to its last user turn: for G, earlier answers are the
    chosen candidate's own, which the rejected one's last answer did not see — the standard
    compromise for multi-turn DPO on sampled continuations; single-turn pairs are exact.
    """
    if best.score <= worst.score:
        return None
    messages = best.dialogue.messages
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    chosen = best.dialogue
    return PreferencePair(
        pair_id=pair_id,
        question_id=chosen.question_id,
        character_id=chosen.character_id,
        strategy=chosen.strategy,
        prompt=[ChatMessage(role=m.role, content=m.content) for m in messages[: last_user + 1]],
        chosen=chosen.character_answer,
        rejected=worst.dialogue.character_answer,
        chosen_rank=best.rank,
        rejected_rank=worst.rank,
    )
