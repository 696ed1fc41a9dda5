"""Persona → character profile, as JSON constrained by the `Profile` schema."""

from __future__ import annotations

import json

from pydantic import ValidationError

from opencharacter.engine import Engine, WorkItem
from opencharacter.errors import ParseError
from opencharacter.prompts import PromptTemplate, load_prompt
from opencharacter.records import Character, ChatRequest, Completion, Persona, Profile, Sampling

STAGE = "profiles"
PROFILE_SCHEMA = Profile.model_json_schema()


def build_request(persona: Persona, template: PromptTemplate, sampling: Sampling) -> ChatRequest:
    return ChatRequest(
        messages=template.render(persona=persona.persona),
        sampling=sampling,
        response_schema=PROFILE_SCHEMA,
        schema_name="character_profile",
    )


def parse_profile(completion: Completion) -> Profile:
    text = completion.text.strip()
    if text.startswith("```"):  # servers without structured output sometimes fence their JSON
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        reason = "output truncated at max_tokens" if completion.finish_reason == "length" else f"invalid JSON ({exc})"
        raise ParseError(f"profile is not valid JSON: {reason}", raw=completion.text) from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise ParseError(f"profile field {where}: {first['msg']}", raw=completion.text) from None


def profile_items(personas: list[Persona]) -> list[WorkItem[Persona]]:
    return [WorkItem(p.character_id, f"{index:09d}", p) for index, p in enumerate(personas)]


def profile_worker(engine: Engine, sampling: Sampling, max_attempts: int, prompt_version: int | None = None):
    template = load_prompt("profile", prompt_version)

    async def work(item: WorkItem[Persona], first_attempt: int) -> Character:
        persona = item.payload
        profile, _ = await engine.generate_parsed(
            build_request(persona, template, sampling),
            parse_profile,
            prompt_id=template.id,
            max_attempts=max_attempts,
            first_attempt=first_attempt,
        )
        return Character(
            character_id=persona.character_id,
            persona=persona.persona,
            character=profile.render(),
            profile=profile,
            model=engine.backend.model_id,
            prompt_version=template.id,
        )

    return work
