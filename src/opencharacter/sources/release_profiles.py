"""The released `character` text (`Name: …\\nAge: …\\n…`) read back into our eight-attribute Profile.

The release's profile is prose a 70B model wrote in the paper's label order. Training and chat use
that text verbatim (it is the `character` of the record and of the system prompt); the structured
`Profile` only names the character in chat, cards and reports. So parsing is forgiving: labels in
any case, spelling or markdown (`**Born Place:**`), values that run over several lines, an age
written `42` or `mid-40s`. Only what cannot name a character is refused: no text, no name, no age
number. A missing attribute is recorded as `unspecified`, an over-long one is shortened (the
verbatim text keeps all of it), and the caller counts both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from opencharacter.records import Profile

UNSPECIFIED = "unspecified"
_LABELS: dict[str, str] = {
    "name": "name",
    "fullname": "name",
    "age": "age",
    "gender": "gender",
    "sex": "gender",
    "race": "race",
    "ethnicity": "race",
    "bornplace": "birth_place",
    "birthplace": "birth_place",
    "placeofbirth": "birth_place",
    "born": "birth_place",
    "appearance": "appearance",
    "physicalappearance": "appearance",
    "generalexperience": "general_experience",
    "experience": "general_experience",
    "background": "general_experience",
    "personality": "personality",
    "personalitytraits": "personality",
}
_LINE = re.compile(r"^[\s*#>_-]*([A-Za-z][A-Za-z _-]{0,30}?)[\s*_]*:[\s*_]*(.*)$")
_AGE = re.compile(r"\d{1,3}")


@dataclass
class ParsedProfile:
    profile: Profile | None
    problem: str = ""
    """Why there is no profile (empty text, no name, no age number)."""
    filled: list[str] = field(default_factory=list)
    """Attributes absent from the text, recorded as 'unspecified'."""
    shortened: list[str] = field(default_factory=list)
    """Attributes longer than the Profile allows, cut (the verbatim text keeps them whole)."""


def _label(text: str) -> str | None:
    return _LABELS.get(re.sub(r"[^a-z]", "", text.lower()))


def split_labels(text: str) -> dict[str, str]:
    """Attribute → value; a line without a known label continues the attribute before it."""
    values: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        key = _label(match.group(1)) if match else None
        if key is not None and key not in values:
            current = key
            values[key] = [match.group(2).strip()]
        elif current is not None and line.strip():
            values[current].append(line.strip())
    return {key: " ".join(part for part in parts if part).strip() for key, parts in values.items()}


def parse_profile_text(text: str) -> ParsedProfile:
    """The Profile in a released `character` text, or why there is none."""
    if not text or not text.strip():
        return ParsedProfile(None, "empty profile")
    values = split_labels(text)
    if not values.get("name"):
        return ParsedProfile(None, "profile has no Name line")
    age = _AGE.search(values.get("age", ""))
    if age is None or not 1 <= int(age.group()) <= 120:
        return ParsedProfile(None, "profile has no age between 1 and 120")
    parsed = ParsedProfile(None)
    fields: dict[str, str | int] = {"age": int(age.group())}
    for key, spec in Profile.model_fields.items():
        if key == "age":
            continue
        value = values.get(key, "")
        if not value:
            parsed.filled.append(key)
            value = UNSPECIFIED
        limit = next((m.max_length for m in spec.metadata if getattr(m, "max_length", None)), None)
        if limit is not None and len(value) > limit:
            parsed.shortened.append(key)
            value = value[: limit - 1].rstrip() + "…"
        fields[key] = value
    parsed.profile = Profile.model_validate(fields)
    return parsed
