"""Profile copying: how much of an answer is the character's profile restated.

Both fidelity signals (`eval/fidelity.py`) rank the answerer's own profile by its similarity to the
answer, so an answer that opens by reciting the profile ("Ethan A., a forensic accountant who loves
jigsaw puzzles...") ranks first without playing the character at all — and best-of-n selection, which
keeps the most characteristic candidate, optimises exactly that. This module measures it, so that every
fidelity can be reported beside its copy rate, computed again on the answer with copied spans removed,
and penalised in selection and in RL rewards:

- `copy_rate`: the share of the answer's word n-grams (default trigrams) that occur in the profile;
  n-grams made only of function words ("i am a") never count, so ordinary English is not "copying";
- `opens_with_profile`: the opening sentence names the character or is mostly copied from the profile;
- `mask_copied`: the answer without the words covered by a copied n-gram (what the copy-masked
  fidelity ranks).

Pure functions over strings, deterministic and dependency-free: they run in evaluation, in selection
and inside a trainer's reward loop alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An answer whose every word was copied: nothing of its own is left to rank.
NOTHING_LEFT = "(nothing but the profile)"
DEFAULT_N = 3
# The opening is the first sentence, at most this many words.
OPENING_WORDS = 40
# An opening with at least this share of copied n-grams recites the profile even without the name.
OPENING_COPY_SHARE = 0.5

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")
_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "i",
        "im",
        "i'm",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "him",
        "it",
        "its",
        "we",
        "our",
        "they",
        "their",
        "them",
        "this",
        "that",
        "these",
        "those",
        "who",
        "whom",
        "which",
        "what",
        "when",
        "where",
        "how",
        "there",
        "here",
        "so",
        "not",
        "no",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "can",
        "could",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "just",
        "very",
        "also",
        "too",
        "then",
        "than",
        "up",
        "out",
        "about",
        "into",
        "over",
        "after",
        "before",
        "all",
        "any",
        "some",
        "such",
        "own",
        "same",
        "other",
        "more",
        "most",
        "s",
        "t",
    ]
)
_LABEL = re.compile(r"^\s*[A-Z][A-Za-z ]{1,30}:\s*", re.MULTILINE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, inner apostrophes kept: "I'm" is one word)."""
    return [match.group(0).lower().replace("’", "'") for match in _WORD.finditer(text)]


def has_content(text: str) -> bool:
    """True when the text has a word beyond function words: "Jack Murphy: , . and ." once its name is
    removed has nothing left to rank a profile by."""
    return any(word not in _FUNCTION_WORDS for word in words(text))


def _profile_text(profile: str) -> str:
    """The profile without its field labels ("Name:", "Birth Place:"): labels are layout, not content."""
    return _LABEL.sub(" ", profile)


def _content(gram: tuple[str, ...]) -> bool:
    return any(word not in _FUNCTION_WORDS for word in gram)


def profile_ngrams(profile: str, n: int = DEFAULT_N) -> frozenset[tuple[str, ...]]:
    """Every word n-gram of the profile that carries content (not only function words)."""
    tokens = words(_profile_text(profile))
    return frozenset(g for g in zip(*(tokens[i:] for i in range(n)), strict=False) if _content(g))


def _copied_flags(tokens: list[str], grams: frozenset[tuple[str, ...]], n: int) -> tuple[list[bool], int, int]:
    """Which answer tokens a copied n-gram covers, and (copied n-grams, content n-grams) counted."""
    covered = [False] * len(tokens)
    copied = total = 0
    for start in range(len(tokens) - n + 1):
        gram = tuple(tokens[start : start + n])
        if not _content(gram):
            continue
        total += 1
        if gram in grams:
            copied += 1
            for index in range(start, start + n):
                covered[index] = True
    return covered, copied, total


def copy_rate(answer: str, profile: str, n: int = DEFAULT_N) -> float:
    """Share of the answer's content n-grams found in the profile: 0.0 (nothing copied) to 1.0.

    An answer shorter than n words has no n-gram and scores 0.0: it cannot have restated anything.
    """
    _, copied, total = _copied_flags(words(answer), profile_ngrams(profile, n), n)
    return copied / total if total else 0.0


def _name(profile: str) -> str | None:
    match = re.search(r"^\s*Name:\s*(.+)$", profile, re.MULTILINE)
    return match.group(1).strip() if match else None


def _opening(answer: str) -> str:
    text = answer.strip()
    end = _SENTENCE_END.search(text)
    sentence = text[: end.end()] if end else text
    return " ".join(sentence.split()[:OPENING_WORDS])


def opens_with_profile(answer: str, profile: str, n: int = DEFAULT_N) -> bool:
    """True when the first sentence names the character (any part of its name longer than two letters)
    or at least half of its content n-grams come from the profile."""
    opening = _opening(answer)
    name = _name(profile)
    if name:
        opening_words = set(words(opening))
        if any(part in opening_words for part in words(name) if len(part) > 2):
            return True
    return copy_rate(opening, profile, n) >= OPENING_COPY_SHARE


def mask_copied(answer: str, profile: str, n: int = DEFAULT_N) -> str:
    """The answer with every word covered by a copied n-gram removed (whitespace normalised).

    What is left is what the character said beyond its profile; fidelity ranked on it cannot be won
    by recital. An answer that was all recital becomes `NOTHING_LEFT` (it then ranks at chance).
    """
    matches = list(_WORD.finditer(answer))
    tokens = [m.group(0).lower().replace("’", "'") for m in matches]
    covered, copied, _ = _copied_flags(tokens, profile_ngrams(profile, n), n)
    if not copied:
        return answer
    pieces, cursor = [], 0
    for match, drop in zip(matches, covered, strict=True):
        if drop:
            pieces.append(answer[cursor : match.start()])
            cursor = match.end()
    pieces.append(answer[cursor:])
    left = " ".join("".join(pieces).split())
    return left if words(left) else NOTHING_LEFT


@dataclass(frozen=True)
class CopyMeasure:
    """The copy measures of one answer against its own character's profile."""

    copy_rate: float
    opens_with_profile: bool


def measure(answer: str, profile: str, n: int = DEFAULT_N) -> CopyMeasure:
    """Both measures at once (the profile's n-grams are cheap; this keeps call sites short)."""
    return CopyMeasure(copy_rate(answer, profile, n), opens_with_profile(answer, profile, n))
