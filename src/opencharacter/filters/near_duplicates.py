"""Near-duplicate character profiles: a profile goes when an earlier kept one says nearly the same.

The decision is the MiniLM cosine of the two rendered profiles (≥ `threshold`, 0.95 by default).
Embedding is what costs: measured on 2 cores, MiniLM takes 20–60 ms of CPU per profile, so no index
over the embeddings (faiss, usearch) makes 20k profiles fast: the embeddings themselves are the
bill. Measured on 1,020 generated profiles with planted copies, every pair at cosine ≥ 0.95 shared
≥ 0.91 of its distinct words (word-set Jaccard), while random pairs share ≤ 0.28 (99th percentile).
So `lsh` (the default) embeds only profiles that share at least `candidates` (0.7) of their words
with an earlier kept profile, found with datasketch's MinHash LSH and confirmed exactly; `exact`
embeds every profile and compares it with every kept one, for small runs or to check the
approximation.

Both keep the same deterministic survivor: profiles are visited in run order, and one goes when an
earlier *kept* profile is at cosine ≥ threshold (and, for `lsh`, shares `candidates` of its words);
a copy of a dropped profile is compared with the kept ones only.

Memory is bounded whatever the duplicate rate. Profiles stream through in blocks; only the kept
ones stay (their word hashes, MinHash in the LSH index, text until embedded, vector once
embedded), and no list of candidate pairs is ever built: a run whose profiles are nearly all
copies of a few templates keeps a few templates. (The first version materialised every candidate
pair and their vectors: 4,900 templated profiles needed > 24 GB.) Each profile is compared with at
most `MAX_CANDIDATES` earlier kept profiles (the earliest); when a run hits that, the report says so.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opencharacter.errors import MissingDependencyError
from opencharacter.records import PROFILE_LABELS, Character

Embed = Callable[[list[str]], Any]
"""Texts → L2-normalised vectors (rows), e.g. `opencharacter.models.embedder.Embedder()`."""

_NUM_PERM = 128
BLOCK = 512
"""Profiles decided together: their embeddings are computed in one batch."""
MAX_CANDIDATES = 512
"""Earlier kept profiles a profile is compared with, at most (the earliest first)."""
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


def _word_hashes(text: str) -> Any:
    """A profile's words as a sorted array of CRC32s: ~0.4 kB a profile instead of ~5 kB for a set of
    strings, and deterministic, unlike Python's salted `hash`."""
    import numpy as np

    return np.array(sorted({zlib.crc32(w.encode()) for w in profile_words(text)}), dtype=np.uint32)


def _array_jaccard(a: Any, b: Any) -> float:
    import numpy as np

    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 1.0


@dataclass
class Outcome:
    """What the near-duplicate pass decided: dropped id → the kept id it nearly duplicates."""

    dropped: dict[str, str] = field(default_factory=dict)
    embedded: int = 0
    """Profiles embedded (the cost)."""
    capped: int = 0
    """Profiles that had more than `MAX_CANDIDATES` word-similar earlier kept profiles."""

    def notes(self) -> list[str]:
        if not self.capped:
            return []
        return [
            f"near_duplicate_profiles: {self.capped} profiles share {MAX_CANDIDATES}+ earlier kept profiles' words "
            f"(a templated teacher?); each was compared with the earliest {MAX_CANDIDATES} only"
        ]


def _default_embed() -> Embed:
    from opencharacter.models.embedder import Embedder

    return Embedder()


def _blocks(characters: Iterable[Character]) -> Iterator[list[tuple[int, str, str]]]:
    numbered = ((n, c.character_id, c.character) for n, c in enumerate(characters))
    while block := list(itertools.islice(numbered, BLOCK)):
        yield block


class _Kept:
    """The kept profiles: their ids, texts (until embedded) and vectors, by position in the run."""

    def __init__(self, embed: Embed, outcome: Outcome) -> None:
        self.embed, self.outcome = embed, outcome
        self.ids: dict[int, str] = {}
        self.texts: dict[int, str] = {}
        self.vectors: dict[int, Any] = {}

    def vectorise(self, positions: Iterable[int], texts: dict[int, str]) -> None:
        """Embed, in one batch, the profiles among `positions` that have no vector yet."""
        missing = sorted({p for p in positions if p not in self.vectors})
        if not missing:
            return
        # Longest first, so each batch pads to similar lengths; the order of rows does not change results.
        order = sorted(missing, key=lambda p: -len(texts.get(p) or self.texts[p]))
        vectors = self.embed([texts.get(p) or self.texts[p] for p in order])
        for row, position in enumerate(order):
            self.vectors[position] = vectors[row]
            self.texts.pop(position, None)
        self.outcome.embedded += len(order)


def near_duplicates(
    characters: Iterable[Character],
    threshold: float,
    method: str = "lsh",
    candidates: float = 0.7,
    embed: Embed | None = None,
) -> Outcome:
    """The near-duplicate decision over `characters` (streamed once, in run order)."""
    outcome = Outcome()
    lazy: list[Embed] = []

    def embedder(texts: list[str]) -> Any:
        if not lazy:
            lazy.append(embed or _default_embed())  # loaded only when some profile needs a vector
        return lazy[0](texts)

    kept = _Kept(embedder, outcome)
    if method == "exact":
        for block in _blocks(characters):
            _decide_exact(block, kept, threshold)
        return outcome
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise DatasketchMissing("datasketch", "filters") from None
    # Weighted towards recall: a missed pair is a kept duplicate, a spurious one costs one intersection.
    lsh = MinHashLSH(threshold=candidates, num_perm=_NUM_PERM, weights=(0.1, 0.9))
    words: dict[int, Any] = {}
    for block in _blocks(characters):
        texts = {position: text for position, _, text in block}
        confirmed: dict[int, list[int]] = {}
        hashes = [_word_hashes(text) for _, _, text in block]
        for (position, _, _), own, minhash in zip(
            block, hashes, MinHash.generator(hashes, num_perm=_NUM_PERM, hashfunc=int), strict=True
        ):
            proposed = sorted(lsh.query(minhash))
            if len(proposed) > MAX_CANDIDATES:
                outcome.capped += 1
                proposed = proposed[:MAX_CANDIDATES]
            similar = [j for j in proposed if _array_jaccard(own, words[j]) >= candidates]
            if similar:
                confirmed[position] = similar
            words[position] = own
            lsh.insert(position, minhash)  # until the block is decided: later members compare with it
        kept.vectorise([p for pair in confirmed.items() for p in (pair[0], *pair[1])], texts)
        for position, character_id, text in block:
            keeper = _first_similar(position, confirmed.get(position, ()), kept, threshold)
            if keeper is None:
                kept.ids[position] = character_id
                if position not in kept.vectors:
                    kept.texts[position] = text
            else:
                outcome.dropped[character_id] = kept.ids[keeper]
                lsh.remove(position)
                del words[position]
                kept.vectors.pop(position, None)
    return outcome


def _first_similar(position: int, earlier: Iterable[int], kept: _Kept, threshold: float) -> int | None:
    """The earliest kept profile among `earlier` at cosine ≥ threshold with `position`, or None."""
    survivors = [j for j in earlier if j in kept.ids]
    if not survivors:
        return None
    import numpy as np

    own = np.asarray(kept.vectors[position])
    others = np.stack([np.asarray(kept.vectors[j]) for j in survivors])
    above = np.nonzero(others @ own >= threshold)[0]
    return survivors[int(above[0])] if above.size else None


def _decide_exact(block: list[tuple[int, str, str]], kept: _Kept, threshold: float) -> None:
    """Every profile of the block embedded and compared with every kept one (earlier blocks and its own)."""
    import numpy as np

    texts = {position: text for position, _, text in block}
    kept.vectorise(texts, texts)
    earlier = sorted(kept.ids)
    matrix = np.stack([np.asarray(kept.vectors[j]) for j in earlier]) if earlier else None
    block_kept: list[int] = []  # kept members of this block: after the earlier blocks' in run order
    for position, character_id, _ in block:
        own = np.asarray(kept.vectors[position])
        keeper = None
        if matrix is not None:
            above = np.nonzero(matrix @ own >= threshold)[0]
            keeper = earlier[int(above[0])] if above.size else None
        if keeper is None and block_kept:
            within = np.stack([np.asarray(kept.vectors[j]) for j in block_kept]) @ own
            above = np.nonzero(within >= threshold)[0]
            keeper = block_kept[int(above[0])] if above.size else None
        if keeper is None:
            kept.ids[position] = character_id
            block_kept.append(position)
        else:
            kept.outcome.dropped[character_id] = kept.ids[keeper]
            del kept.vectors[position]


def near_duplicate_profiles(
    characters: Iterable[Character],
    threshold: float,
    method: str = "lsh",
    candidates: float = 0.7,
    embed: Embed | None = None,
) -> dict[str, str]:
    """character_id → the earlier kept character it nearly duplicates (MiniLM cosine ≥ threshold)."""
    return near_duplicates(characters, threshold, method, candidates, embed).dropped
