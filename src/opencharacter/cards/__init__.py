"""Character Cards V2 and V3 (JSON and PNG), so characters travel to and from SillyTavern-style front ends.

Cards from strangers are read safely: PNG text chunks by walking the file (no pixel decoded, sizes
capped), control sequences stripped from every string, every failure one InputError.
"""

from opencharacter.cards.card_v2 import CardData, CardV2
from opencharacter.cards.card_v3 import CardDataV3, CardV3, card_from_character, to_v2, to_v3
from opencharacter.cards.files import Card, parse_card, read_card, write_card_json, write_card_png
from opencharacter.cards.persona import character_from_card
from opencharacter.cards.text import strip_controls

__all__ = [
    "Card",
    "CardData",
    "CardDataV3",
    "CardV2",
    "CardV3",
    "card_from_character",
    "character_from_card",
    "parse_card",
    "read_card",
    "strip_controls",
    "to_v2",
    "to_v3",
    "write_card_json",
    "write_card_png",
]
