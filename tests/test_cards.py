from __future__ import annotations

import base64
import json

import pytest

from opencharacter.cards import card_from_character, character_from_card, read_card, write_card_json, write_card_png
from opencharacter.cards.card_v2 import CardV2
from opencharacter.errors import InputError
from opencharacter.records import Character, Profile

CHARACTER = Character(
    character_id="abc123",
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


def test_card_has_the_v2_shape_and_keeps_our_ids():
    card = card_from_character(CHARACTER).model_dump()
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    data = card["data"]
    for field in (
        "name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
        "system_prompt", "post_history_instructions", "alternate_greetings", "tags", "creator",
        "character_version", "extensions",
    ):  # fmt: skip
        assert field in data
    assert data["name"] == "Ines Moreau" and data["description"] == CHARACTER.character
    ours = data["extensions"]["opencharacter"]
    assert ours["character_id"] == "abc123" and ours["persona"] == CHARACTER.persona


@pytest.mark.parametrize("suffix", [".json", ".png"])
def test_round_trip_preserves_everything_including_unknown_fields(tmp_path, suffix):
    card = card_from_character(CHARACTER)
    raw = card.model_dump()
    raw["data"]["extensions"]["sillytavern"] = {"depth_prompt": {"prompt": "x", "depth": 4}}
    raw["data"]["character_book"] = {"entries": [{"keys": ["clock"], "content": "She owns 40 clocks."}]}
    raw["unknown_top_level"] = 1
    card = CardV2.model_validate(raw)
    path = tmp_path / f"card{suffix}"
    (write_card_json if suffix == ".json" else write_card_png)(card, path)
    again = read_card(path)
    assert again.model_dump() == raw
    assert character_from_card(again) == (CHARACTER.persona, CHARACTER.character)


def test_png_card_is_a_real_png_with_a_chara_chunk(tmp_path):
    from PIL import Image

    path = write_card_png(card_from_character(CHARACTER), tmp_path / "c.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (256, 256)
        payload = json.loads(base64.b64decode(image.text["chara"]))
    assert payload["data"]["name"] == "Ines Moreau"


def test_foreign_v1_card_becomes_a_persona(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"name": "Captain Vex", "description": "A sky pirate.\nLoud.", "personality": "Bold"}))
    persona, character = character_from_card(read_card(path))
    assert persona == "Captain Vex: A sky pirate." and "Personality: Bold" in character


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"description": "no name"}}', "data.name"),
        (b'{"spec": "chara_card_v2", "spec_version": "3.0", "data": {"name": "x"}}', "spec_version"),
    ],
)
def test_malformed_cards_are_clear_errors(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_card(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_png_without_card_and_not_a_png(tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(InputError, match="no 'chara' text chunk"):
        read_card(plain)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable PNG"):
        read_card(fake)


def test_export_cards_from_a_run(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 3, "--backend", "fake", "-q")[0] == 0
    )
    code, out, _ = run_cli("export", "--run", run, "--format", "cards")
    assert code == 0 and "wrote 3 character cards" in out
    cards = sorted((run / "exports" / "cards").glob("*.png"))
    assert len(cards) == 3 and len(list((run / "exports" / "cards").glob("*.json"))) == 3
    assert read_card(cards[0]).data.extensions["opencharacter"]["character_id"] == cards[0].stem


def test_cards_seed_the_pipeline_as_personas(tmp_path):
    from opencharacter.sources import load_personas

    folder = tmp_path / "cards"
    write_card_png(card_from_character(CHARACTER), folder / "ines.png")
    (folder / "v1.json").write_text(json.dumps({"name": "Captain Vex", "description": "A sky pirate."}))
    personas, report = load_personas(folder, fmt="cards")
    assert report.kept == 2
    assert [p.persona for p in personas] == [CHARACTER.persona, "Captain Vex: A sky pirate."]
    single, _ = load_personas(folder / "ines.png")
    assert single[0].character_id == personas[0].character_id


def test_foreign_v2_card_brings_everything_sillytavern_would_send(tmp_path):
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Captain Vex",
            "description": "{{char}} is a sky pirate who owes {{user}} money.",
            "personality": "Bold, loud.",
            "scenario": "{{user}} boards {{char}}'s airship.",
            "first_mes": "*grins* Well, if it isn't {{user}}!",
            "mes_example": "<START>\n{{user}}: Where's my money?\n{{char}}: Spent on <BOT>'s engines, <USER>.",
            "system_prompt": "{{original}}\nWrite {{char}}'s next reply in a fictional chat.",
            "post_history_instructions": "Stay in character as {{char}}; never speak for {{User}}.",
            "character_book": {
                "entries": [
                    {"keys": ["ship"], "content": "The airship is named Gale.", "insertion_order": 2},
                    {"keys": [], "content": "Sky pirates fear the Navy.", "constant": True, "insertion_order": 5},
                    {"keys": ["x"], "content": "A disabled entry.", "enabled": False},
                ]
            },
        },
    }
    path = tmp_path / "vex.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    persona, character = character_from_card(read_card(path), user="Mara")
    assert persona == "Captain Vex: Captain Vex is a sky pirate who owes Mara money."
    assert character.splitlines()[0] == "Write Captain Vex's next reply in a fictional chat."
    assert "Description: Captain Vex is a sky pirate who owes Mara money." in character
    assert "Scenario: Mara boards Captain Vex's airship." in character
    assert "World info:\n- Sky pirates fear the Navy.\n- The airship is named Gale." in character
    assert "disabled" not in character
    assert "Example dialogue:\nMara: Where's my money?\nCaptain Vex: Spent on Captain Vex's engines, Mara." in character
    assert "Greeting (your first message): *grins* Well, if it isn't Mara!" in character
    assert character.endswith("Stay in character as Captain Vex; never speak for Mara.")
    assert "{{" not in character and "<START>" not in character and "{{original}}" not in character
