"""Near-duplicate character profiles: a profile goes when an earlier kept one says nearly the same.

The decision is the MiniLM cosine of the two rendered profiles (≥ `threshold`, 0.95 by default),
as before. What changed is which pairs get compared. Embedding is what costs: measured on 2 cores,
MiniLM takes 60–66 ms of CPU per profile (≈ 20 CPU-minutes for the paper's 20k characters), so no
index over the embeddings (faiss, usearch) can make 20k profiles fast — the embeddings themselves
are the bill. Measured on 1,020 generated profiles with planted copies, every pair at cosine ≥ 0.95
shared ≥ 0.91 of its distinct words (word-set Jaccard), while random pairs share ≤ 0.28 (99th
percentile). So `lsh` (the default) first finds the pairs that share at least `candidates` (0.7) of
their words with datasketch's MinHash LSH, confirms that Jaccard exactly, and embeds only the
profiles in those pairs: the cost grows with the number of near-copies, not with n². `exact` embeds
every profile and compares all pairs, block by block (no n × n matrix), for small runs or to check
the approximation.

Both keep the same deterministic survivor: profiles are visited in run order, and one goes when
an earlier *kept* profile is at cosine ≥ threshold; a copy of a dropped profile is compared with
the kept ones only.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from opencharacter.errors import MissingDependencyError
from opencharacter.records import PROFILE_LABELS, Character

Embed = Callable[[list[str]], Any]
"""Texts → L2-normalised vectors (rows), e.g. `opencharacter.models.embedder.Embedder()`."""

_NUM_PERM = 128
_BLOCK = 1024
_LABELS = re.compile(r"^(?:" + "|".join(re.escape(label) for label in PROFILE_LABELS.values()) + r"):\s*", re.M)


class DatasketchMissing(MissingDependencyError):
    def __str__(self) -> str:
        return (
            "near-duplicate profiles (method 'lsh') need datasketch: pip install 'opencharacter[filters]' "
            "(or set filters.near_duplicate_method: exact)"
        )


def profile_words(text: str) -> set[str]:
    """The distinct lower-cased words of a profile's values; the labels every profile shares are left out."""
    return set(re.findall(r"\w+", _LABELS.sub("", text).lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def candidate_pairs(texts: Sequence[str], min_jaccard: float) -> list[tuple[int, int]]:
    """Pairs (j, i), j < i, whose word sets have Jaccard ≥ `min_jaccard`, found with MinHash LSH.

    LSH may miss a qualifying pair (128 permutations; at 0.7 datasketch picks 20 bands of 6 rows,
    which finds a pair at Jaccard 0.7 with probability 0.92, at 0.8 with 0.998, at 0.9 with
    > 0.9999) and proposes some that do not qualify; those are dropped by computing the Jaccard
    exactly.
    """
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise DatasketchMissing("datasketch", "filters") from None
    # Each profile's words as a sorted array of CRC32s: ~0.5 kB a profile instead of ~5 kB for a set
    # of strings (114 MB at 20k), and deterministic, unlike Python's salted `hash`.
    words = [_word_hashes(text) for text in texts]
    # Weighted towards recall: a missed pair is a kept duplicate, a spurious one costs one intersection.
    lsh = MinHashLSH(threshold=min_jaccard, num_perm=_NUM_PERM, weights=(0.1, 0.9))
    pairs = []
    for i, minhash in enumerate(MinHash.generator(words, num_perm=_NUM_PERM, hashfunc=int)):
        for j in lsh.query(minhash):
            if _array_jaccard(words[i], words[j]) >= min_jaccard:
                pairs.append((j, i))
        lsh.insert(i, minhash)
    return sorted(pairs)


def _word_hashes(text: str) -> Any:
    import numpy as np

    return np.array(sorted({zlib.crc32(w.encode()) for w in profile_words(text)}), dtype=np.uint64)


def _array_jaccard(a: Any, b: Any) -> float:
    import numpy as np

    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 1.0


def _similar_pairs_exact(vectors: Any, threshold: float) -> list[tuple[int, int]]:
    """All (j, i), j < i, with cosine ≥ threshold; one block of rows at a time, so memory is O(block × n)."""
    import torch

    pairs = []
    for start in range(0, len(vectors), _BLOCK):
        block = vectors[start : start + _BLOCK] @ vectors.T
        rows, cols = torch.nonzero(block >= threshold, as_tuple=True)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if col < start + row:
                pairs.append((col, start + row))
    return sorted(pairs)


def _cosines(vectors: Any, pairs: list[tuple[int, int]]) -> list[float]:
    if not pairs:
        return []
    left = vectors[[j for j, _ in pairs]]
    right = vectors[[i for _, i in pairs]]
    return (left * right).sum(-1).tolist()


def greedy_keep_first(ids: Sequence[str], pairs: list[tuple[int, int]]) -> dict[str, str]:
    """Visit in order; i goes when an earlier kept j is paired with it. Returns dropped id → kept id."""
    earlier: dict[int, list[int]] = {}
    for j, i in pairs:
        earlier.setdefault(i, []).append(j)
    dropped: dict[int, int] = {}
    for i in sorted(earlier):
        keeper = next((j for j in sorted(earlier[i]) if j not in dropped), None)
        if keeper is not None:
            dropped[i] = keeper
    return {ids[i]: ids[j] for i, j in dropped.items()}


def _default_embed() -> Embed:
    from opencharacter.models.embedder import Embedder

    return Embedder()


def near_duplicate_profiles(
    characters: Sequence[Character],
    threshold: float,
    method: str = "lsh",
    candidates: float = 0.7,
    embed: Embed | None = None,
) -> dict[str, str]:
    """character_id → the earlier kept character it nearly duplicates (MiniLM cosine ≥ threshold)."""
    if len(characters) < 2:
        return {}
    ids = [c.character_id for c in characters]
    texts = [c.character for c in characters]
    if method == "exact":
        vectors = (embed or _default_embed())(texts)
        return greedy_keep_first(ids, _similar_pairs_exact(vectors, threshold))
    pairs = candidate_pairs(texts, candidates)
    if not pairs:
        return {}
    involved = sorted({k for pair in pairs for k in pair})
    position = {k: n for n, k in enumerate(involved)}
    # Longest first, so each batch pads to similar lengths; the order of rows does not change results.
    by_length = sorted(involved, key=lambda k: -len(texts[k]))
    row = {k: n for n, k in enumerate(by_length)}
    vectors = (embed or _default_embed())([texts[k] for k in by_length])[[row[k] for k in involved]]
    local = [(position[j], position[i]) for j, i in pairs]
    similar = [pair for pair, cosine in zip(pairs, _cosines(vectors, local), strict=True) if cosine >= threshold]
    return greedy_keep_first(ids, similar)
