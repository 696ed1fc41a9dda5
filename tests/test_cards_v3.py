"""Character Card V3: read V3 JSON and `ccv3` PNG chunks (lorebook kept), write V3 with a V2 backfill."""

from __future__ import annotations

import base64
import json

import pytest

from opencharacter.cards import (
    CardV2,
    CardV3,
    card_from_character,
    character_from_card,
    read_card,
    to_v2,
    write_card_json,
    write_card_png,
)
from opencharacter.cards.card_v3 import BACKFILL_NOTE
from opencharacter.cards.png import read_text_chunks
from opencharacter.records import Character, Profile

CHARACTER = Character(
    character_id="c0ffee",
    persona="A retired lighthouse keeper who restores clocks.",
    character="Name: Ines Moreau\nAge: 67",
    profile=Profile(
        name="Ines Moreau",
        age=67,
        gender="female",
        race="French",
        birth_place="Brest",
        appearance="Silver hair.",
        general_experience="Kept the Kermorvan light for 30 years.",
        personality="Patient, precise, wry.",
    ),
    model="m",
    prompt_version="profile@v1",
)

# What SillyTavern exports as V3 (fields as the spec lists them), with a V3 lorebook and unknown keys.
SILLYTAVERN_V3 = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        "name": "Captain Vex",
        "nickname": "Vex",
        "description": "{{char}} is a sky pirate who owes {{user}} money.",
        "personality": "Bold.",
        "scenario": "",
        "first_mes": "Ahoy, {{user}}!",
        "mes_example": "",
        "creator_notes": "",
        "creator_notes_multilingual": {"fr": "Une pirate du ciel."},
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Back again?"],
        "group_only_greetings": ["Crew, to your posts!"],
        "tags": ["pirate"],
        "creator": "someone",
        "character_version": "2",
        "source": ["https://example.org/vex"],
        "creation_date": 1700000000,
        "modification_date": 1700000500,
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        "extensions": {"depth_prompt": {"prompt": "x", "depth": 4}},
        "character_book": {
            "name": "Vex lore",
            "extensions": {},
            "entries": [
                {"keys": ["ship"], "content": "The airship is named Gale.", "extensions": {}, "enabled": True,
                 "insertion_order": 1, "use_regex": False, "constant": False},
                {"keys": ["/nav(y|ies)/"], "content": "Sky pirates fear the Navy.", "extensions": {}, "enabled": True,
                 "insertion_order": 0, "use_regex": True, "constant": True},
            ],
        },
    },
    "sillytavern_extra": {"kept": True},
}  # fmt: skip


def test_v3_json_round_trips_unchanged_lorebook_included(tmp_path):
    path = tmp_path / "vex.json"
    path.write_text(json.dumps(SILLYTAVERN_V3), encoding="utf-8")
    card = read_card(path)
    assert isinstance(card, CardV3)
    again = tmp_path / "again.json"
    write_card_json(card, again)
    assert json.loads(again.read_text(encoding="utf-8")) == SILLYTAVERN_V3


def test_v3_without_optional_fields_gains_no_keys(tmp_path):
    minimal = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Mina", "group_only_greetings": []}}
    path = tmp_path / "mina.json"
    path.write_text(json.dumps(minimal), encoding="utf-8")
    dumped = read_card(path).model_dump()
    for key in ("nickname", "assets", "source", "creation_date", "creator_notes_multilingual"):
        assert key not in dumped["data"]


def test_v3_png_has_ccv3_and_a_v2_backfill_and_reads_back_as_v3(tmp_path):
    card = CardV3.model_validate(SILLYTAVERN_V3)
    path = write_card_png(card, tmp_path / "vex.png")
    chunks = read_text_chunks(path, ("ccv3", "chara"))
    v3 = json.loads(base64.b64decode(chunks["ccv3"]))
    v2 = json.loads(base64.b64decode(chunks["chara"]))
    assert v3 == SILLYTAVERN_V3
    # The backfill is a valid V2 card for V2-only front ends, with the spec's note and the lorebook.
    backfill = CardV2.model_validate(v2)
    assert backfill.spec == "chara_card_v2" and backfill.data.name == "Captain Vex"
    assert backfill.data.creator_notes.startswith(BACKFILL_NOTE)
    assert v2["data"]["character_book"] == SILLYTAVERN_V3["data"]["character_book"]
    assert "group_only_greetings" not in v2["data"] and "nickname" not in v2["data"]
    # A reader that finds both uses ccv3.
    assert read_card(path).model_dump() == SILLYTAVERN_V3


def test_a_pillow_v2_reader_sees_the_backfill(tmp_path):
    """What a V2-only tool (Pillow's text chunks, as older front ends read them) gets from our V3 PNG."""
    from PIL import Image

    path = write_card_png(card_from_character(CHARACTER, version=3), tmp_path / "ines.png")
    with Image.open(path) as image:
        v2 = json.loads(base64.b64decode(image.text["chara"]))
    assert v2["spec"] == "chara_card_v2" and v2["data"]["extensions"]["opencharacter"]["character_id"] == "c0ffee"


def test_our_characters_round_trip_through_v3(tmp_path):
    card = card_from_character(CHARACTER, version=3)
    assert isinstance(card, CardV3) and card.data.group_only_greetings == []
    for suffix in (".json", ".png"):
        path = tmp_path / f"ines{suffix}"
        (write_card_json if suffix == ".json" else write_card_png)(card, path)
        again = read_card(path)
        assert isinstance(again, CardV3)
        assert character_from_card(again) == (CHARACTER.persona, CHARACTER.character)


def test_v3_nickname_stands_for_char_and_the_lorebook_reaches_the_prompt(tmp_path):
    path = tmp_path / "vex.json"
    path.write_text(json.dumps(SILLYTAVERN_V3), encoding="utf-8")
    persona, character = character_from_card(read_card(path), user="Mara")
    assert "Description: Vex is a sky pirate who owes Mara money." in character
    assert "World info:\n- Sky pirates fear the Navy.\n- The airship is named Gale." in character
    assert persona.startswith("Captain Vex: ")


def test_v2_to_v3_and_back_keeps_the_v2_fields():
    v2 = card_from_character(CHARACTER)
    back = to_v2(card_from_character(CHARACTER, version=3))
    expected = v2.model_dump()
    expected["data"]["creator_notes"] = f"{BACKFILL_NOTE}\n\n{v2.data.creator_notes}"
    assert back.model_dump() == expected
    with pytest.raises(ValueError):
        card_from_character(CHARACTER, version=4)


def test_export_cards_v3_from_a_run(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 2, "--backend", "fake", "-q")[0] == 0
    )
    code, out, err = run_cli("export", "--run", run, "--format", "cards", "--card-version", 3)
    assert code == 0, err
    assert "wrote 2 character cards (V3 with a V2 backfill" in out
    pngs = sorted((run / "exports" / "cards").glob("*.png"))
    assert len(pngs) == 2
    assert set(read_text_chunks(pngs[0], ("ccv3", "chara"))) == {"ccv3", "chara"}
    assert isinstance(read_card(pngs[0]), CardV3)
    code, _, err = run_cli("export", "--run", run, "--format", "cards", "--card-version", 4)
    assert code == 2 and "--card-version must be 2 or 3" in err
