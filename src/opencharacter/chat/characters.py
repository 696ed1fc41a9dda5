"""Resolve `--character`: an id or name from a run, a Character Card (JSON/PNG), or a one-line persona."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opencharacter.cards import character_from_card, read_card
from opencharacter.errors import ConfigError
from opencharacter.export.run_files import CHARACTERS
from opencharacter.records import Character

# What the profile section says when only a persona is known: the model improvises within it.
NO_PROFILE = "(No profile beyond the persona: invent details that fit it, and keep them consistent.)"


@dataclass(frozen=True)
class ChatCharacter:
    label: str
    persona: str
    character: str


def _run_characters(run: Path) -> list[Character]:
    path = run / CHARACTERS
    if not path.is_file():
        raise ConfigError(f"{run} has no {CHARACTERS}; make profiles first or pass a card or persona")
    return [Character.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def resolve_character(spec: str, run: Path | None = None) -> ChatCharacter:
    path = Path(spec)
    if path.suffix.lower() in (".json", ".png") and path.exists():
        card = read_card(path)
        persona, character = character_from_card(card)
        return ChatCharacter(card.data.name, persona, character)
    if run is not None:
        characters = _run_characters(run)
        wanted = spec.strip().lower()
        matches = [c for c in characters if c.character_id == spec or c.profile.name.lower() == wanted] or [
            c for c in characters if wanted and wanted in c.profile.name.lower()
        ]
        if len(matches) == 1:
            found = matches[0]
            return ChatCharacter(found.profile.name, found.persona, found.character)
        if len(matches) > 1:
            names = ", ".join(f"{c.profile.name} ({c.character_id})" for c in matches[:5])
            raise ConfigError(f"--character {spec!r} matches several characters: {names}; use an id")
    if len(spec.split()) < 3:
        raise ConfigError(
            f"--character {spec!r} is not a card file, "
            + ("not an id or name in the run, " if run else "")
            + "and too short to be a persona (write one sentence, e.g. 'A retired sailor who paints.')"
        )
    return ChatCharacter("character", spec.strip(), NO_PROFILE)
