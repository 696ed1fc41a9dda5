"""`--dry-run`: what a command would still do, counted without calling the model.

Each stage runs as usual on the items it would run (done and failed-before items are skipped as
the executor skips them), but with a `generate` that records the request and answers like the fake
backend. So the counts come from the real stages and prompts: items, calls (first attempts only:
retries after invalid output are not predictable), rendered prompt characters and the token caps.
Nothing is written: pairings that are not recorded yet are drawn but not stored.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from opencharacter.backends.fake import fake_value
from opencharacter.config import ProfilesConfig, SynthesisConfig
from opencharacter.errors import ParseError
from opencharacter.executors import Stage, WorkItem
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.records import Character, ChatRequest, Completion, Instruction, Persona, Profile, Strategy
from opencharacter.stages import pairing
from opencharacter.stages.dialogues import DialogueStage, applies, dialogue_items
from opencharacter.stages.profiles import PROFILE_SCHEMA, ProfileStage, profile_items
from opencharacter.store import RunStore
from opencharacter.store.run_store import STORE_FILE

T = TypeVar("T")
CHARS_PER_TOKEN = 4.0  # a rough English average, for the prompt side of an estimate


@dataclass
class StagePlan:
    """One stage's remaining work: items by state, and the calls it would make per prompt."""

    label: str
    items: int = 0
    done: int = 0
    failed_before: int = 0
    to_make: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    prompt_chars: Counter[str] = field(default_factory=Counter)
    max_tokens: Counter[str] = field(default_factory=Counter)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def prompt_tokens(self) -> int:
        return round(sum(self.prompt_chars.values()) / CHARS_PER_TOKEN)

    @property
    def completion_cap(self) -> int:
        return sum(self.max_tokens.values())


class PlanningGenerate:
    """A `generate` that records each request and answers with schema-valid filler (no model)."""

    def __init__(self, plan: StagePlan) -> None:
        self.plan = plan

    async def __call__(
        self,
        request: ChatRequest,
        parse: Callable[[Completion], T],
        *,
        prompt_id: str,
        max_attempts: int,
        first_attempt: int = 0,
        variant: int = 0,
    ) -> tuple[T, int]:
        self.plan.calls[prompt_id] += 1
        self.plan.prompt_chars[prompt_id] += sum(len(m.content) for m in request.messages)
        self.plan.max_tokens[prompt_id] += request.sampling.max_tokens
        schema = request.response_schema
        key = content_hash("dry-run", prompt_id, len(self.plan.calls))
        text = canonical_json(fake_value(schema, key, schema)) if schema else "A planned answer, in character."
        return parse(Completion(text=text)), 1


def open_store(run_dir: Path) -> RunStore | None:
    """The run's store when it exists (read for what is done); a dry run never creates one."""
    return RunStore(run_dir) if (run_dir / STORE_FILE).exists() else None


async def plan_stage(
    store: RunStore | None,
    stage: Stage[Any, BaseModel],
    items: Iterable[WorkItem[Any]],
    label: str,
    retry_failed: bool,
) -> tuple[StagePlan, list[BaseModel]]:
    """The plan, and the records the stage would make (filler where the model would answer)."""
    plan = StagePlan(label)
    generate = PlanningGenerate(plan)
    made: list[BaseModel] = []
    for item in items:
        plan.items += 1
        if store is not None and store.has_record(stage.name, item.id):
            plan.done += 1
            continue
        failure = store.get_failure(stage.name, item.id) if store is not None else None
        if failure is not None and not retry_failed:
            plan.failed_before += 1
            continue
        plan.to_make += 1
        try:
            record = await stage(item, generate, failure.attempts if failure else 0)
        except ParseError:  # filler the stage rejects: the call is still counted
            continue
        if stage.name == "profiles":
            made.append(record)
    return plan, made


def plan_profiles(
    store: RunStore | None, personas: Sequence[Persona], config: ProfilesConfig, model: str, retry_failed: bool
) -> tuple[StagePlan, list[Character]]:
    stage = ProfileStage(config.sampling, config.max_attempts, model, config.prompt_version)
    plan, made = asyncio.run(plan_stage(store, stage, profile_items(personas), "profiles", retry_failed))
    return plan, [c for c in made if isinstance(c, Character)]


def planned_character(persona: Persona, model: str) -> Character:
    """A stand-in for a profile not made yet: the right id and persona, filler attributes."""
    profile = Profile.model_validate(fake_value(PROFILE_SCHEMA, persona.character_id, PROFILE_SCHEMA))
    return Character(
        character_id=persona.character_id,
        persona=persona.persona,
        character=profile.render(),
        profile=profile,
        model=model,
        prompt_version="planned",
    )


def plan_synthesis(
    store: RunStore | None,
    instructions: Sequence[Instruction],
    strategies: Sequence[Strategy],
    config: SynthesisConfig,
    model: str,
    characters: dict[str, Character],
    retry_failed: bool,
) -> list[StagePlan]:
    """Dialogue plans per strategy; pairings recorded in the run are reused, new ones drawn (not stored)."""
    pool = sorted(characters)
    pairing.check_pool(len(pool), config.per_instruction)
    stage = DialogueStage(config, model)

    def characters_for(instruction: Instruction) -> list[Character]:
        recorded = (
            store.get_record(pairing.STAGE, instruction.question_id, pairing.InstructionPairing) if store else None
        )
        kept = recorded.character_ids if recorded is not None else []
        ids = pairing.draw(instruction.question_id, pool, config.per_instruction, config.seed, kept)
        return [characters[c] for c in ids]

    plans = []
    for strategy in strategies:
        paired = (
            (index, instruction, characters_for(instruction))
            for index, instruction in enumerate(instructions)
            if applies(instruction, strategy)
        )
        items = dialogue_items(paired, strategy, config.candidates)
        plan, _ = asyncio.run(plan_stage(store, stage, items, strategy, retry_failed))
        plans.append(plan)
    return plans
