"""Character Card V2 (`spec: "chara_card_v2"`, `spec_version: "2.0"`).

PNG cards carry the card as base64 JSON in a `chara` tEXt chunk. Unknown fields of imported cards
are kept (pydantic `extra="allow"`) and written back unchanged; our ids and the original persona
live under `extensions.opencharacter`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opencharacter.errors import InputError
from opencharacter.fileio import atomic_open
from opencharacter.hashing import content_hash
from opencharacter.records import Character

EXTENSION = "opencharacter"
_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(bot|user)>", re.IGNORECASE)


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


def card_from_character(character: Character, creator: str = "opencharacter") -> CardV2:
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


def character_from_card(card: CardV2, user: str = "User") -> tuple[str, str]:
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

    def fill(text: str) -> str:
        return substitute(text, name, user).strip()

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


def write_card_json(card: CardV2, path: Path) -> Path:
    with atomic_open(path) as stream:
        stream.write(card.model_dump_json(indent=2))
    return path


def _avatar(name: str) -> Any:
    """A plain avatar (a colour from the name, and initials): cards need an image to live in."""
    from PIL import Image, ImageDraw

    digest = content_hash("avatar", name)
    colour = tuple(64 + int(digest[i : i + 2], 16) // 2 for i in (0, 2, 4))
    image = Image.new("RGB", (256, 256), colour)
    initials = "".join(part[0] for part in name.split()[:2]).upper() or "?"
    ImageDraw.Draw(image).text((128, 128), initials, fill=(255, 255, 255), anchor="mm", font_size=96)
    return image


def write_card_png(card: CardV2, path: Path, image_path: Path | None = None) -> Path:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    image = Image.open(image_path) if image_path else _avatar(card.data.name)
    info = PngInfo()
    info.add_text("chara", base64.b64encode(card.model_dump_json().encode("utf-8")).decode("ascii"))
    with atomic_open(path, "wb") as stream:
        image.save(stream, format="PNG", pnginfo=info)
    return path


def read_card(path: str | Path) -> CardV2:
    """A card from `.json` or `.png`; every problem is an InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, "card file not found")
    if path.suffix.lower() == ".png":
        raw = _png_payload(path)
    else:
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(str(path), None, "card is not valid UTF-8 JSON") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), exc.lineno, f"card is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(str(path), None, "card JSON is nested too deeply to read") from None
    if isinstance(data, dict) and data.get("spec") != "chara_card_v2" and "name" in data:
        data = {"data": data}  # a V1 card: the fields sit at the top level
    try:
        return CardV2.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InputError(str(path), None, f"not a Character Card V2: {where}: {error['msg']}") from None


def _png_payload(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or image.info)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(str(path), None, f"not a readable PNG ({exc})") from None
    encoded = text.get("chara")
    if not encoded:
        raise InputError(str(path), None, "PNG has no 'chara' text chunk: not a character card")
    try:
        return base64.b64decode(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InputError(str(path), None, "the 'chara' chunk is not base64-encoded UTF-8 JSON") from None
