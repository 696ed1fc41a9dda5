"""A card as the system prompt's (persona, character) pair: what SillyTavern would put in front of the model."""

from __future__ import annotations

import re
from typing import Any

from opencharacter.cards.card_v2 import EXTENSION, CardV2
from opencharacter.cards.card_v3 import CardV3

_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(bot|user)>", re.IGNORECASE)


def character_from_card(card: CardV2 | CardV3, user: str = "User") -> tuple[str, str]:
    """(persona, character text) for the system prompt; ours round-trip exactly, others are adapted.

    A foreign card's text is what SillyTavern would put in front of the model, in its order: the
    card's own system prompt, the character definition (description, personality, scenario), the
    always-on and keyword lore of its character book, example dialogues, the greeting, and last
    the post-history instructions (SillyTavern sends those after the chat; the end of a system
    prompt is the nearest static place). `{{char}}` and `{{user}}` are substituted.
    """
    ours = card.data.extensions.get(EXTENSION)
    if isinstance(ours, dict) and "persona" in ours:
        return str(ours["persona"]), card.data.description
    data = card.data
    name = data.name
    speaking_as = getattr(data, "nickname", None) or name

    def fill(text: str) -> str:
        return substitute(text, speaking_as, user).strip()

    description = fill(data.description)
    persona = f"{name}: {description.splitlines()[0]}" if description else name
    parts = []
    if fill(data.system_prompt.replace("{{original}}", "")):
        parts.append(fill(data.system_prompt.replace("{{original}}", "")))
    parts.append(f"Name: {name}")
    for label, text in (
        ("Description", data.description),
        ("Personality", data.personality),
        ("Scenario", data.scenario),
    ):
        if fill(text):
            parts.append(f"{label}: {fill(text)}")
    lore = _lore(getattr(data, "character_book", None))
    if lore:
        parts.append("World info:\n" + "\n".join(f"- {fill(entry)}" for entry in lore))
    examples = fill(data.mes_example.replace("<START>", "").replace("<start>", ""))
    if examples:
        parts.append(f"Example dialogue:\n{examples}")
    if fill(data.first_mes):
        parts.append(f"Greeting (your first message): {fill(data.first_mes)}")
    if fill(data.post_history_instructions.replace("{{original}}", "")):
        parts.append(fill(data.post_history_instructions.replace("{{original}}", "")))
    return persona, "\n".join(parts)


def substitute(text: str, char: str, user: str) -> str:
    """SillyTavern's `{{char}}`/`{{user}}` macros (and their legacy `<BOT>`/`<USER>` forms)."""

    def value(match: re.Match[str]) -> str:
        return char if (match.group(1) or match.group(2)).lower() in ("char", "bot") else user

    return _MACRO.sub(value, text)


def _lore(book: Any) -> list[str]:
    """Enabled character-book entries, constant ones first, then by insertion order.

    A static system prompt cannot scan the chat for keywords, so every enabled entry is included;
    SillyTavern would insert a keyword entry only once its key is mentioned.
    """
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        return []
    entries = [
        e
        for e in book["entries"]
        if isinstance(e, dict) and e.get("enabled", True) and isinstance(e.get("content"), str) and e["content"].strip()
    ]
    entries.sort(key=lambda e: (not e.get("constant", False), e.get("insertion_order", 0)))
    return [e["content"] for e in entries]
