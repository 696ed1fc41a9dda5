from __future__ import annotations

import pytest

from opencharacter.errors import ConfigError
from opencharacter.prompts import load_prompt, parse_prompt_id
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.records import Profile

PROFILE = Profile(
    name="Mara Lind",
    age=41,
    gender="female",
    race="white",
    birth_place="Tromsø, Norway",
    appearance="Tall, weathered.",
    general_experience="Twenty years at sea.",
    personality="Dry humour.",
)


def test_profile_renders_the_released_character_text():
    assert PROFILE.render().splitlines() == [
        "Name: Mara Lind",
        "Age: 41",
        "Gender: female",
        "Race: white",
        "Born Place: Tromsø, Norway",
        "Appearance: Tall, weathered.",
        "General Experience: Twenty years at sea.",
        "Personality: Dry humour.",
    ]


def test_profile_schema_bounds_are_enforced():
    with pytest.raises(ValueError):
        Profile.model_validate({**PROFILE.model_dump(), "age": 500})
    with pytest.raises(ValueError):
        Profile.model_validate({**PROFILE.model_dump(), "name": "   "})
    with pytest.raises(ValueError):
        Profile.model_validate({**PROFILE.model_dump(), "hobby": "chess"})


def test_user_text_is_data_never_a_template():
    persona = "A hacker who types {{ 7 * 7 }} and {% raw %} everywhere {{ config }}"
    messages = load_prompt("profile").render(persona=persona)
    assert persona in messages[1].content
    assert "49" not in messages[1].content
    system = render_system_prompt(persona, "Name: {{ self }}")
    assert "{{ 7 * 7 }}" in system and "Name: {{ self }}" in system


def test_prompt_versions_are_addressable():
    template = load_prompt("rewrite")
    assert template.id == "rewrite@v2"
    assert parse_prompt_id("rewrite@v2") == template
    assert parse_prompt_id("rewrite@v1") == load_prompt("rewrite", 1) != template
    with pytest.raises(ConfigError, match="no version 99"):
        load_prompt("rewrite", 99)
    with pytest.raises(ConfigError, match="unknown prompt"):
        load_prompt("nonexistent")


def test_system_prompt_holds_persona_and_profile():
    text = render_system_prompt("A sailor.", PROFILE.render())
    assert "Persona: A sailor." in text and "Name: Mara Lind" in text and "Personality: Dry humour." in text
