"""Answers that are well-formed JSON but not dialogue: letter soup, template leftovers, copied originals.

Each was seen in real runs with weak teachers (issue 12): `howtomakevinaigrettesociadeferrare…`,
`{RESPONSE_2} {RESPONSE_3}`, and "rewrites" that return the original answer unchanged. The checks
are written to spare code, math and non-English text: code spans are cut out before looking for
placeholders or copies, and only Latin-script words are judged for looking like language.
"""

from __future__ import annotations

import re

# Fenced blocks first (they may contain backticks), then inline spans.
_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`", re.DOTALL)

# Placeholders a template or a prompt left behind: {RESPONSE_2}, {{ answer }}, {% if %}, {…}, {answer_text},
# and numbered ones a small teacher invents: {user1}, {USER 1}, {Author 1}.
# `${HOME}`, `/users/{user_id}`, `\frac{a}{b}`, `x^{2}`, `\text{name}` are not: the brace follows `$ / \ ^ _` or a word.
# Also JSON debris at the very start (`]} 2017-…`, `} {id: 1}`): what is left when a structured answer
# was cut open; no answer starts with a closing bracket.
_PLACEHOLDER = re.compile(
    r"\{\{.*?\}\}|\{%.*?%\}|\{\s*(?:…|\.\.\.)\s*\}"
    r"|(?<![\w$\\^_}/])\{(?:[A-Z][A-Z0-9_]+|[a-z]+_[a-z0-9_]+|[A-Za-z]+[ _]?[0-9]+)\}"
    r"|\A\s*[\]}]+"
)

_LATIN_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ſ]+")
_VOWELS = set("aeiouyAEIOUYàáâãäåæèéêëìíîïòóôõöøùúûüýÿāăąēĕėęěīĭįıōŏőœūŭůűųŷ")
_CONSONANT_RUN = re.compile(r"[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]{6,}")


def without_code(text: str) -> str:
    return _CODE.sub(" ", text)


def template_leftover(text: str) -> str | None:
    """The first placeholder outside code, or None."""
    match = _PLACEHOLDER.search(without_code(text))
    return match.group(0) if match else None


def _looks_like_a_word(word: str) -> bool:
    return len(word) <= 25 and any(c in _VOWELS for c in word) and not _CONSONANT_RUN.search(word)


def non_language(text: str) -> str | None:
    """Why `text` is not language, or None.

    Three signs, all on Latin-script letters (CJK, Cyrillic, Arabic… text is never judged), after
    cutting out code (identifiers are not prose):
    - an unbroken run of 60+ ASCII letters (the longest words people quote, the 58-letter Welsh
      village and the 45-letter "pneumono…coniosis", stay below it);
    - half or more of the letters in lower-case runs of 25+ (soup is lower-case; a sentence with two
      long German compounds has a third, and names such as Llanfairpwll… are capitalised);
    - among 8+ words of 3+ letters, fewer than half that look like words (a vowel, no run of 6
      consonants, at most 25 letters).
    """
    prose = without_code(text)
    runs = re.findall(r"[A-Za-z]+", prose)
    longest = max(runs, key=len, default="")
    if len(longest) >= 60:
        return f"a {len(longest)}-letter run {longest[:24]!r}…"
    letters = sum(len(w) for w in _LATIN_WORD.findall(prose))
    glued = sum(len(r) for r in runs if len(r) >= 25 and r.islower())
    if letters and glued / letters >= 0.5:
        return f"{glued / letters:.0%} of its letters in unbroken runs of 25+"
    words = [w for w in _LATIN_WORD.findall(prose) if len(w) >= 3]
    if len(words) >= 8:
        share = sum(_looks_like_a_word(w) for w in words) / len(words)
        if share < 0.5:
            return f"only {share:.0%} of its words look like words"
    return None


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def copied_share(rewrite: str, original: str, min_words: int = 8) -> float | None:
    """Share of the rewrite's word 3-grams (outside code) found in the original; None when too short to say.

    Code blocks are cut from both sides: a rewrite rightly keeps the original's code unchanged.
    """
    rewritten, source = without_code(rewrite), without_code(original)
    if len(re.findall(r"\w+", rewritten)) < min_words or len(re.findall(r"\w+", source)) < min_words:
        return None
    grams = _trigrams(rewritten)
    return len(grams & _trigrams(source)) / len(grams) if grams else None
