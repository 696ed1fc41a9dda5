"""The character system prompt shared by training dialogues, chat and evaluation.

Training and inference must see the same prompt; a run records the version it used
(`Dialogue.system_prompt_version`), and train/chat/eval render that same version.
"""

from __future__ import annotations

from opencharacter.prompts import PromptTemplate, load_prompt, parse_prompt_id

PROMPT_NAME = "character_system"


def system_template(version: int | str | None = None) -> PromptTemplate:
    """By number, by recorded id (`character_system@v1`), or the newest."""
    if isinstance(version, str):
        return parse_prompt_id(version)
    return load_prompt(PROMPT_NAME, version)


def render_system_prompt(persona: str, character: str, version: int | str | None = None) -> str:
    return system_template(version).render_block("system", persona=persona, character=character)
