"""Character Card V3 (`spec: "chara_card_v3"`, `spec_version: "3.0"`), and its V2 backfill.

V3 (github.com/kwaroran/character-card-spec-v3) keeps V2's fields and adds `assets`, `nickname`,
`creator_notes_multilingual`, `source`, `group_only_greetings` and creation/modification dates;
its PNG chunk is `ccv3`. A V3 PNG also carries a V2 `chara` chunk so older front ends still load
it; a reader that finds both uses `ccv3`. The lorebook (`character_book`) is kept as given, V3's
entry fields (`use_regex`, …) included.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from opencharacter.cards.card_v2 import CardData, CardV2, card_v2_from_character
from opencharacter.records import Character

BACKFILL_NOTE = (
    "This character card is Character Card V3, but it is loaded as a Character Card V2. "
    "Please use a Character Card V3 compatible application to use this character card properly."
)
# Optional in V3: written only when set, so a card read and written again has the keys it had.
_OPTIONAL = ("assets", "nickname", "creator_notes_multilingual", "source", "creation_date", "modification_date")


class CardDataV3(CardData):
    model_config = ConfigDict(extra="allow")

    group_only_greetings: list[str] = Field(default_factory=list)
    assets: list[dict[str, Any]] | None = None
    nickname: str | None = None
    creator_notes_multilingual: dict[str, str] | None = None
    source: list[str] | None = None
    creation_date: int | None = None
    modification_date: int | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped = handler(self)
        for key in _OPTIONAL:
            if dumped.get(key) is None and key not in self.model_fields_set:
                dumped.pop(key, None)
        return dumped


class CardV3(BaseModel):
    model_config = ConfigDict(extra="allow")

    spec: Literal["chara_card_v3"] = "chara_card_v3"
    spec_version: str = Field(
        "3.0", description="The spec asks readers to accept other versions (newer ones may add fields)."
    )
    data: CardDataV3


def to_v3(card: CardV2 | CardV3) -> CardV3:
    """A V2 card as V3: the same fields, plus V3's required `group_only_greetings` (empty)."""
    if isinstance(card, CardV3):
        return card
    extra = {key: value for key, value in card.model_dump().items() if key not in ("spec", "spec_version", "data")}
    return CardV3(data=CardDataV3.model_validate(card.data.model_dump()), **extra)


def to_v2(card: CardV2 | CardV3) -> CardV2:
    """The V2 backfill of a V3 card: V2's fields (lorebook kept), V3's additions dropped, and the
    spec's note in `creator_notes` that a V3-capable app shows the card in full."""
    if isinstance(card, CardV2):
        return card
    data = card.data.model_dump()
    v3_only = {"group_only_greetings", *_OPTIONAL}
    kept = {key: value for key, value in data.items() if key not in v3_only}
    notes = kept.get("creator_notes") or ""
    kept["creator_notes"] = f"{BACKFILL_NOTE}\n\n{notes}".rstrip() if BACKFILL_NOTE not in notes else notes
    return CardV2(data=CardData.model_validate(kept))


def card_from_character(character: Character, creator: str = "opencharacter", version: int = 2) -> CardV2 | CardV3:
    """A character as a card: V2 by default, V3 (`version=3`, written with a V2 backfill) on request."""
    if version not in (2, 3):
        raise ValueError(f"card version must be 2 or 3, got {version!r}")
    card = card_v2_from_character(character, creator)
    return to_v3(card) if version == 3 else card
