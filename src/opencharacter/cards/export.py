"""A run's characters as Character Cards of either version (`export --format cards --card-version 3`)."""

from __future__ import annotations

from pathlib import Path

from opencharacter.cards.card_v3 import card_from_character
from opencharacter.cards.files import write_card_json, write_card_png
from opencharacter.errors import ConfigError
from opencharacter.records import Character


def write_cards(characters: list[Character], out: Path, version: int = 2) -> tuple[Path, int]:
    """`<id>.json` and `<id>.png` per character; a V3 PNG also carries the V2 `chara` backfill."""
    for character in characters:
        card = card_from_character(character, version=version)
        write_card_json(card, out / f"{character.character_id}.json")
        write_card_png(card, out / f"{character.character_id}.png")
    return out, len(characters)


def export_run_cards(run: Path, out: Path, version: int = 2) -> tuple[Path, int]:
    from opencharacter.store import RunStore
    from opencharacter.store.lock import RunLock
    from opencharacter.store.run_store import STORE_FILE

    if not (run / STORE_FILE).exists():
        raise ConfigError(f"{run} is not a run directory (no {STORE_FILE})")
    with RunLock(run, "export"):
        store = RunStore(run)
        try:
            return write_cards(list(store.records("profiles", Character)), out, version)
        finally:
            store.close()
