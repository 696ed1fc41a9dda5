"""Character Card V2 import/export (JSON and PNG), so characters travel to SillyTavern-style front ends."""

from opencharacter.cards.card_v2 import (
    CardV2,
    card_from_character,
    character_from_card,
    read_card,
    write_card_json,
    write_card_png,
)

__all__ = [
    "CardV2",
    "card_from_character",
    "character_from_card",
    "read_card",
    "write_card_json",
    "write_card_png",
]
