"""Cards on disk: read V1/V2/V3 JSON and PNG cards from anyone, write V2 or V3 (with a V2 backfill).

Reading treats the file as untrusted: a PNG is read by its chunks (`cards/png.py`, no pixel is
decoded), every size is capped, terminal control sequences are stripped from every string
(`cards/text.py`), and every failure is one InputError naming the file (exit 2).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from opencharacter.cards.card_v2 import CardV2
from opencharacter.cards.card_v3 import CardV3, to_v2
from opencharacter.cards.png import MAX_TEXT_BYTES, read_text_chunks
from opencharacter.cards.text import clean
from opencharacter.errors import InputError
from opencharacter.fileio import atomic_open
from opencharacter.hashing import content_hash

Card = CardV2 | CardV3
V2_CHUNK, V3_CHUNK = "chara", "ccv3"
_SPECS = {"chara_card_v2": CardV2, "chara_card_v3": CardV3}


def read_card(path: str | Path) -> Card:
    """A card from `.json` or `.png` (V3 when the PNG has a `ccv3` chunk, else its V2 `chara`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, "card file not found")
    raw = _png_payload(path) if path.suffix.lower() == ".png" else _json_text(path)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), exc.lineno, f"card is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(str(path), None, "card JSON is nested too deeply to read") from None
    return parse_card(clean(data), str(path))


def parse_card(data: Any, where: str) -> Card:
    """A decoded card (V1's top-level fields become V2's `data`); problems name `where`."""
    if not isinstance(data, dict):
        raise InputError(where, None, f"not a character card: expected a JSON object, got {type(data).__name__}")
    spec = data.get("spec")
    if spec not in _SPECS and "name" in data:
        data = {"data": data}  # a V1 card: the fields sit at the top level
        spec = "chara_card_v2"
    model = _SPECS.get(spec, CardV2)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        place = ".".join(str(p) for p in error["loc"])
        version = "V3" if model is CardV3 else "V2"
        raise InputError(where, None, f"not a Character Card {version}: {place}: {error['msg']}") from None
    except RecursionError:
        raise InputError(where, None, "card JSON is nested too deeply to read") from None


def _json_text(path: Path) -> str:
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise InputError(str(path), None, f"card file is over the {MAX_TEXT_BYTES // 2**20} MiB limit")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(str(path), None, "card is not valid UTF-8 JSON") from None


def _png_payload(path: Path) -> str:
    chunks = read_text_chunks(path, (V3_CHUNK, V2_CHUNK))
    name = V3_CHUNK if V3_CHUNK in chunks else V2_CHUNK
    encoded = chunks.get(name)
    if not encoded:
        raise InputError(str(path), None, "PNG has no 'chara' text chunk (nor 'ccv3'): not a character card")
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError(str(path), None, f"the '{name}' chunk is not base64-encoded UTF-8 JSON") from None


def write_card_json(card: Card, path: Path) -> Path:
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


def _encoded(card: Card) -> str:
    return base64.b64encode(card.model_dump_json().encode("utf-8")).decode("ascii")


def write_card_png(card: Card, path: Path, image_path: Path | None = None) -> Path:
    """A PNG card: `chara` for V2; `ccv3` plus the V2 backfill in `chara` for V3.

    `image_path` is the user's own picture (else a generated avatar); it is decoded to be
    re-encoded, so it is trusted input, unlike the cards read above.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    image = Image.open(image_path) if image_path else _avatar(card.data.name)
    info = PngInfo()
    if isinstance(card, CardV3):
        info.add_text(V3_CHUNK, _encoded(card))
    info.add_text(V2_CHUNK, _encoded(to_v2(card)))
    with atomic_open(path, "wb") as stream:
        image.save(stream, format="PNG", pnginfo=info)
    return path
