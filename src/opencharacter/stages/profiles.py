"""Persona → character profile, as JSON constrained by the `Profile` schema."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from opencharacter.errors import ParseError
from opencharacter.prompts import PromptTemplate, load_prompt
from opencharacter.records import Character, ChatRequest, Completion, Persona, Profile, Sampling
from opencharacter.stages.base import Generate, WorkItem

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


def profile_items(personas: Iterable[Persona]) -> Iterator[WorkItem[Persona]]:
    """One item per persona, lazily; the id is the persona's, so a persona is profiled once per run."""
    for index, persona in enumerate(personas):
        yield WorkItem(persona.character_id, f"{index:09d}", persona)


class ProfileStage:
    """Persona → `Character`: one structured call, retried on invalid output.

    Holds settings only (the template is resolved once here; pickling sends the settings and the
    receiving process resolves it again), so an executor can run it anywhere.
    """

    name = STAGE

    def __init__(self, sampling: Sampling, max_attempts: int, model: str, prompt_version: int | None = None) -> None:
        self.sampling, self.max_attempts, self.model, self.prompt_version = (
            sampling,
            max_attempts,
            model,
            prompt_version,
        )
        self.template = load_prompt("profile", prompt_version)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.sampling, self.max_attempts, self.model, self.prompt_version))

    @property
    def settings(self) -> dict[str, Any]:
        """What shapes a profile besides its persona and model; a run directory keeps one."""
        return {"prompt": self.template.id, "sampling": self.sampling.model_dump(mode="json")}

    async def __call__(self, item: WorkItem[Persona], generate: Generate, first_attempt: int) -> Character:
        persona = item.payload
        profile, _ = await generate(
            build_request(persona, self.template, self.sampling),
            parse_profile,
            prompt_id=self.template.id,
            max_attempts=self.max_attempts,
            first_attempt=first_attempt,
        )
        return Character(
            character_id=persona.character_id,
            persona=persona.persona,
            character=profile.render(),
            profile=profile,
            model=self.model,
            prompt_version=self.template.id,
        )
