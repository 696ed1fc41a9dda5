"""The individual filters. Each returns a reason string when a dialogue should go, else None."""

from __future__ import annotations

import re

from opencharacter.records import Character, Dialogue

# Phrases that break character or refuse; lower-case, matched at word boundaries.
_BREAKS = re.compile(
    r"\b(as an ai|as a language model|i am an ai|i'm an ai|i am a language model|i'm a language model|"
    r"as an assistant|i cannot assist|i can't assist|i'm sorry, but i can(?:no|')t|i am unable to help|"
    r"openai|large language model|virtual assistant)\b",
    re.IGNORECASE,
)


def answers(dialogue: Dialogue) -> list[str]:
    return [m.content for m in dialogue.messages if m.role == "assistant"]


def breaks_character(dialogue: Dialogue) -> str | None:
    for text in answers(dialogue):
        match = _BREAKS.search(text)
        if match:
            return f"breaks character: {match.group(0)!r}"
    return None


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_profile(dialogue: Dialogue, character: Character | None, span: int = 10) -> str | None:
    """An answer that repeats `span` consecutive words of the profile is parroting, not role-play."""
    if character is None:
        return None
    profile = _ngrams(re.findall(r"\w+", character.character.lower()), span)
    for text in answers(dialogue):
        if _ngrams(re.findall(r"\w+", text.lower()), span) & profile:
            return f"copies {span}+ consecutive words of the profile"
    return None


def length_out_of_bounds(dialogue: Dialogue, min_chars: int, max_chars: int) -> str | None:
    for text in answers(dialogue):
        if len(text) < min_chars:
            return f"answer shorter than {min_chars} characters"
        if len(text) > max_chars:
            return f"answer longer than {max_chars} characters"
    return None


def truncated_or_empty(dialogue: Dialogue) -> str | None:
    if any(not text.strip() for text in answers(dialogue)):
        return "empty answer"
    if "length" in dialogue.finish_reasons:
        return "answer cut at max_tokens (finish_reason = length)"
    return None
