"""The selection step: after synthesis, in the driving process (never in stage workers: the MiniLM
embedder is heavy and one copy is enough), score every pair's candidates and record the choice.

It streams the `dialogues` stage in sort order (a pair's candidates are adjacent, see
`dialogue_items`), embeds the profiles once and the answers a batch of pairs at a time, so memory
does not grow with the run. A pair whose fingerprint (candidates, distractors, settings, scoring
version) matches its recorded `PairSelection` is not embedded again: a rerun of a finished run
loads no model at all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from opencharacter.config import SelectionConfig
from opencharacter.errors import ConfigError
from opencharacter.eval.copying import copy_rate
from opencharacter.eval.fidelity import own_rank, without_names
from opencharacter.hashing import content_hash
from opencharacter.records import CandidateScore, Character, Dialogue
from opencharacter.selection import (
    CANDIDATE_SCORES,
    PREFERENCES,
    SELECTED,
    SELECTION,
    SUMMARY_META,
)
from opencharacter.selection.scoring import (
    SELECTION_VERSION,
    PairSelection,
    Scored,
    below_chance,
    best_and_worst,
    distractors,
    preference,
)
from opencharacter.stages.dialogues import STAGE as DIALOGUES
from opencharacter.stages.dialogues import candidate_id
from opencharacter.store import RunStore

Embed = Callable[[list[str]], Any]
PAIRS_PER_BATCH = 64


@dataclass
class SelectionSummary:
    """What the selection did this time and where the whole run stands (for notes and the card)."""

    pairs: int = 0
    scored_now: int = 0
    candidates: int = 0
    kept: int = 0
    dropped: int = 0
    preferences: int = 0
    best_rr: float = 0.0
    first_rr: float = 0.0
    first_pairs: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, selection: PairSelection, has_preference: bool) -> None:
        self.pairs += 1
        self.candidates += selection.candidates
        self.kept += selection.chosen is not None
        self.dropped += selection.chosen is None
        self.preferences += has_preference
        self.best_rr += 1 / selection.best_rank
        if selection.first_rank is not None:
            self.first_pairs += 1
            self.first_rr += 1 / selection.first_rank

    def as_meta(self) -> dict[str, float | int]:
        return {
            "pairs": self.pairs,
            "candidates": self.candidates,
            "kept": self.kept,
            "dropped_below_chance": self.dropped,
            "preferences": self.preferences,
            "mean_best_rr": self.best_rr / self.pairs if self.pairs else 0.0,
            "mean_first_rr": self.first_rr / self.first_pairs if self.first_pairs else 0.0,
        }


@dataclass
class _Pair:
    pair_id: str
    character_id: str
    members: list[tuple[str, Dialogue]]
    """(sort key, dialogue) of each candidate made so far."""
    distractors: list[str]
    fingerprint: str


class _Profiles:
    """Every character's profile embedding, names removed, computed once (and only if needed)."""

    def __init__(self, characters: dict[str, Character], embed: Embed) -> None:
        self.ids = sorted(characters)
        self.index = {c: i for i, c in enumerate(self.ids)}
        self.names = {c: characters[c].profile.name for c in self.ids}
        texts = [without_names(characters[c].character, [self.names[c]]) for c in self.ids]
        self.vectors = embed(texts)


def select_candidates(
    store: RunStore, config: SelectionConfig, seed: int, embed: Embed | None = None
) -> SelectionSummary:
    """Score and select every pair of the run (synchronously; see `select_candidates_async`)."""
    return asyncio.run(select_candidates_async(store, config, seed, embed))


async def select_candidates_async(
    store: RunStore, config: SelectionConfig, seed: int, embed: Embed | None = None
) -> SelectionSummary:
    """Score every pair whose fingerprint changed, record its choice, and summarise the run.

    `embed` (texts → L2-normalised rows) defaults to the evaluation's MiniLM `Embedder`, built on
    first need. Yields to the event loop between batches, so a signal can stop a long selection
    (what was recorded stays; the rest is scored on the next run).
    """
    characters = {c.character_id: c for c in store.records("profiles", Character)}
    pool = sorted(characters)
    if len(pool) < 2:
        raise ConfigError("synthesis.candidates > 1 needs at least 2 characters in the run to rank a profile among")
    summary = SelectionSummary()
    profiles: _Profiles | None = None
    batch: list[_Pair] = []

    def flush() -> None:
        nonlocal profiles, embed
        if not batch:
            return
        if embed is None:
            from opencharacter.models.embedder import Embedder

            embed = Embedder()
        if profiles is None:
            profiles = _Profiles(characters, embed)
        texts = [text for pair in batch for text in _answers(pair, profiles)]
        vectors = embed(texts)
        start = 0
        for pair in batch:
            end = start + len(pair.members)
            scored = _score(pair, profiles, vectors[start:end])
            if config.copy_penalty:
                profile = characters[pair.character_id].character
                scored = [
                    replace(s, copy_rate=copy_rate(s.dialogue.character_answer, profile),
                            copy_penalty=config.copy_penalty)
                    for s in scored
                ]  # fmt: skip
            _record(store, pair, scored, config, summary)
            start = end
        batch.clear()

    for pair in _pairs(store, pool, config, seed):
        recorded = store.get_record(SELECTION, pair.pair_id, PairSelection)
        if recorded is not None and recorded.fingerprint == pair.fingerprint:
            summary.add(recorded, store.has_record(PREFERENCES, pair.pair_id))
            continue
        batch.append(pair)
        if len(batch) >= PAIRS_PER_BATCH:
            flush()
            await asyncio.sleep(0)
    flush()
    store.set_meta(SUMMARY_META, summary.as_meta())
    return summary


def _pairs(store: RunStore, pool: list[str], config: SelectionConfig, seed: int) -> Iterator[_Pair]:
    """The run's dialogues grouped by pair, in sort order, with each pair's distractors and fingerprint."""
    rows = ((sort_key, Dialogue.model_validate_json(data)) for sort_key, _, data in store.record_rows(DIALOGUES))

    def pair_of(row: tuple[str, Dialogue]) -> str:
        d = row[1]
        return candidate_id(d.question_id, d.character_id, d.strategy)

    # No copy penalty is how pairs were scored before it existed: leave it out of the fingerprint,
    # so those runs' selections stand (and a rerun loads no model).
    settings = config.model_dump(mode="json", exclude={"copy_penalty"} if config.copy_penalty == 0 else None)
    for pair_id, group in itertools.groupby(rows, key=pair_of):
        members = list(group)
        character_id = members[0][1].character_id
        others = distractors(pair_id, character_id, pool, config.distractors, seed)
        ids = [d.dialogue_id for _, d in members]
        fingerprint = content_hash("selection", SELECTION_VERSION, settings, ids, others)
        yield _Pair(pair_id, character_id, members, others, fingerprint)


def _answers(pair: _Pair, profiles: _Profiles) -> list[str]:
    """Each candidate's last answer, without the names of any character it is ranked among."""
    names = [profiles.names[c] for c in (pair.character_id, *pair.distractors)]
    return [without_names(d.character_answer, names) for _, d in pair.members]


def _score(pair: _Pair, profiles: _Profiles, answers: Any) -> list[Scored]:
    """Rank the own profile among own + distractors for each candidate's answer vector."""
    rows = [profiles.index[c] for c in (pair.character_id, *pair.distractors)]
    similarity = answers @ profiles.vectors[rows].T
    scored = []
    for i, (sort_key, dialogue) in enumerate(pair.members):
        rank, margin = own_rank(similarity[i], 0)
        scored.append(Scored(dialogue, sort_key, rank, margin))
    return scored


def _record(
    store: RunStore, pair: _Pair, scored: list[Scored], config: SelectionConfig, summary: SelectionSummary
) -> None:
    ranked = 1 + len(pair.distractors)
    best, worst = best_and_worst(scored)
    dropped = config.drop_below_chance and below_chance(best.rank, ranked)
    pair_sort_key = pair.members[0][0].rsplit(".", 1)[0] if pair.members[0][1].candidate else pair.members[0][0]
    for s in scored:
        score = CandidateScore(
            pair_id=pair.pair_id,
            dialogue_id=s.dialogue.dialogue_id,
            candidate=s.dialogue.candidate,
            rank=s.rank,
            candidates=ranked,
            margin=round(s.margin, 6),
            chosen=s is best and not dropped,
        )
        store.put_record(CANDIDATE_SCORES, s.dialogue.dialogue_id, s.sort_key, score)
    pair_preference = None if dropped else preference(pair.pair_id, best, worst)
    if dropped:
        store.delete_record(SELECTED, pair.pair_id)
    else:
        store.put_record(SELECTED, pair.pair_id, pair_sort_key, best.dialogue)
    if pair_preference is None:
        store.delete_record(PREFERENCES, pair.pair_id)
    else:
        store.put_record(PREFERENCES, pair.pair_id, pair_sort_key, pair_preference)
    first = next((s.rank for s in scored if s.dialogue.candidate == 0), None)
    selection = PairSelection(
        pair_id=pair.pair_id,
        fingerprint=pair.fingerprint,
        chosen=None if dropped else best.dialogue.dialogue_id,
        best_rank=best.rank,
        first_rank=first,
        ranked=ranked,
        candidates=len(scored),
    )
    store.put_record(SELECTION, pair.pair_id, pair_sort_key, selection)
    summary.scored_now += 1
    summary.add(selection, pair_preference is not None)
