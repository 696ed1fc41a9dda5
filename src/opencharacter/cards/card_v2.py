"""Character Card V2 (`spec: "chara_card_v2"`, `spec_version: "2.0"`), and what a card means as a prompt.

PNG cards carry the card as base64 JSON in a `chara` tEXt chunk (`cards/files.py`). Unknown fields
of imported cards are kept (pydantic `extra="allow"`) and written back unchanged; our ids and the
original persona live under `extensions.opencharacter`. Version 3 (`cards/card_v3.py`) shares
these fields, so `character_from_card` serves both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opencharacter.records import Character

EXTENSION = "opencharacter"


class CardData(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)


class CardV2(BaseModel):
    model_config = ConfigDict(extra="allow")

    spec: Literal["chara_card_v2"] = "chara_card_v2"
    spec_version: Literal["2.0"] = "2.0"
    data: CardData


def card_v2_from_character(character: Character, creator: str = "opencharacter") -> CardV2:
    """A character as a V2 card (`cards.card_from_character` also makes V3 ones from it)."""
    profile = character.profile
    return CardV2(
        data=CardData(
            name=profile.name,
            description=character.character,
            personality=profile.personality,
            scenario="",
            first_mes=f"Hello, I'm {profile.name}.",
            creator_notes=f"Made by opencharacter from the persona: {character.persona}",
            tags=["opencharacter", "synthetic"],
            creator=creator,
            character_version="1",
            extensions={
                EXTENSION: {
                    "character_id": character.character_id,
                    "persona": character.persona,
                    "profile": profile.model_dump(),
                    "model": character.model,
                    "prompt_version": character.prompt_version,
                }
            },
        )
    )
