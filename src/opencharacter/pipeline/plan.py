"""`--dry-run`: what a command would still do, counted without calling the model.

Each stage is built as the command builds it (`work.py`, with the same refusals of other settings)
and runs on the items the executor would run (the executor base's `triage` skips done and
failed-before items), but with a `generate` that records the request and answers like the fake
backend. So the counts come from the real stages and prompts: items, calls (first attempts only:
retries after invalid output are not predictable), rendered prompt characters and the token caps.
Nothing is written: pairings that are not recorded yet are drawn but not stored, and a run
directory that does not exist is not made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from opencharacter.backends.fake import fake_value
from opencharacter.config import BackendConfig, PipelineConfig, ProfilesConfig, SynthesisConfig
from opencharacter.engine.costs import CHARS_PER_TOKEN, PlannedCall, PlannedCalls
from opencharacter.errors import ParseError
from opencharacter.executors import Stage, StageResult, WorkItem
from opencharacter.executors.base import triage
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.pipeline.work import ProfilesWork, SynthesisWork
from opencharacter.records import Character, ChatRequest, Completion, Instruction, Persona, Profile, Strategy
from opencharacter.sources import PersonaFile
from opencharacter.sources.files import load_instruction_sources
from opencharacter.stages.profiles import PROFILE_SCHEMA
from opencharacter.store import RunStore
from opencharacter.store.identity import RunIdentity
from opencharacter.store.layout import existing_run, is_run

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opencharacter.sources.files import LoadedSource

T = TypeVar("T")


@dataclass
class StagePlan:
    """One stage's remaining work: items by state, and the calls it would make per prompt."""

    label: str
    items: int = 0
    done: int = 0
    failed_before: int = 0
    to_make: int = 0
    planned: PlannedCalls = field(default_factory=PlannedCalls)
    model: str = ""
    """The teacher the calls would go to (what `--dry-run` prices)."""
    observed: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    """The run's own usage so far (`RunStore.usage_rows()`): completion lengths the estimate uses."""

    @property
    def calls(self) -> Any:
        return self.planned.calls

    @property
    def prompt_chars(self) -> Any:
        return self.planned.prompt_chars

    @property
    def max_tokens(self) -> Any:
        return self.planned.max_tokens

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
        self.plan.planned.add(PlannedCall.of(prompt_id, request))
        schema = request.response_schema
        key = content_hash("dry-run", prompt_id, len(self.plan.calls))
        text = canonical_json(fake_value(schema, key, schema)) if schema else "A planned answer, in character."
        return parse(Completion(text=text)), 1


def open_store(run_dir: Path) -> RunStore | None:
    """The run's store when it exists (read for what is done); a dry run never creates one."""
    return RunStore(run_dir) if is_run(run_dir) else None


@contextmanager
def _reading(run_dir: Path, backend: BackendConfig, *, existing: bool = False) -> Iterator[_Reader]:
    reader = _Reader(run_dir, backend, existing)
    try:
        yield reader
    finally:
        reader.close()


class _Reader:
    """The run's store (if any), the teacher's model id, and the run's identity checked as the
    command would check it, without recording anything."""

    def __init__(self, run_dir: Path, backend: BackendConfig, existing: bool) -> None:
        if existing:
            existing_run(run_dir)
        self.store = open_store(run_dir)
        try:
            self.model, decoding = _teacher(backend)
            self.identity = RunIdentity(self.store, run_dir) if self.store is not None else None
            if self.identity is not None:
                self.identity.teacher(self.model, decoding, record=False)
        except BaseException:
            self.close()
            raise

    def plan(self, label: str) -> StagePlan:
        observed = self.store.usage_rows() if self.store is not None else []
        return StagePlan(label, model=self.model, observed=observed)

    def profiles(self, personas: Iterable[Persona], config: ProfilesConfig, retry_failed: bool) -> StagePlan:
        work = ProfilesWork(config, self.model)
        work.check(self.identity, record=False)
        items = work.items(personas)
        return asyncio.run(plan_stage(self.store, work.stage, items, "profiles", retry_failed, self.plan("profiles")))

    def synthesis(
        self, loaded: list[LoadedSource], config: SynthesisConfig, retry_failed: bool, planned: dict | None = None
    ) -> list[StagePlan]:
        plans: list[StagePlan] = []
        for source, instructions, _ in loaded:
            plans += plan_synthesis(
                self.store, instructions, source.strategies, config, self.model, None, retry_failed,
                identity=self.identity, planned=planned, plan=self.plan,
            )  # fmt: skip
        return plans

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _teacher(backend: BackendConfig) -> tuple[str, str | None]:
    """The model id records would carry and its decoding, without loading a model (backends load lazily)."""
    from opencharacter.backends import build_backend

    built = build_backend(backend)
    try:
        return built.model_id, built.decoding
    finally:
        asyncio.run(built.aclose())


async def plan_stage(
    store: RunStore | None,
    stage: Stage[Any, BaseModel],
    items: Iterable[WorkItem[Any]],
    label: str,
    retry_failed: bool,
    plan: StagePlan | None = None,
) -> StagePlan:
    """The stage run on the items the executor would run, with a recording `generate`."""
    plan = plan or StagePlan(label)
    generate = PlanningGenerate(plan)
    result = StageResult(label, total=0)
    for item, failure in triage(store, stage.name, items, result, retry_failed=retry_failed):
        plan.to_make += 1
        try:
            await stage(item, generate, failure.attempts if failure else 0)
        except ParseError:  # filler the stage rejects: the call is still counted
            continue
    plan.items, plan.done, plan.failed_before = result.total, result.done_before, result.skipped_failed
    return plan


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
    instructions: Iterable[Instruction],
    strategies: Sequence[Strategy],
    config: SynthesisConfig,
    model: str,
    characters: dict[str, Character] | None = None,
    retry_failed: bool = False,
    *,
    identity: RunIdentity | None = None,
    planned: dict[str, Callable[[], Character]] | None = None,
    plan: Callable[[str], StagePlan] | None = None,
) -> list[StagePlan]:
    """Dialogue plans per strategy: the command's stage and pairing (recorded pairings reused, new ones
    drawn, not stored) over the run's characters, plus `planned` ones still to be made."""
    work = SynthesisWork(config, model)
    work.check(identity, strategies, record=False)
    extra = dict(planned or {})
    for character_id, character in (characters or {}).items():  # the older signature: characters by id
        extra.setdefault(character_id, lambda character=character: character)
    work.pair(store, record=False, planned=extra)
    plans = []
    for strategy in strategies:
        stage_plan = plan(strategy) if plan is not None else StagePlan(strategy, model=model)
        items = work.items(instructions, strategy)
        asyncio.run(plan_stage(store, work.stage, items, strategy, retry_failed, stage_plan))
        plans.append(stage_plan)
    return plans


# -- the dry runs of the commands --------------------------------------------------------------------
def dry_run_profiles(
    run_dir: str | Path, personas: Iterable[Persona], config: ProfilesConfig, backend: BackendConfig,
    retry_failed: bool = False,
) -> list[StagePlan]:  # fmt: skip
    """What `run_profiles` would still do; calls no model and writes nothing."""
    with _reading(Path(run_dir), backend) as run:
        return [run.profiles(personas, config, retry_failed)]


def dry_run_synthesis(
    run_dir: str | Path, loaded: list[LoadedSource], config: SynthesisConfig, backend: BackendConfig,
    retry_failed: bool = False,
) -> list[StagePlan]:  # fmt: skip
    """What `run_synthesis` would still do with the run's characters; calls no model, writes nothing."""
    with _reading(Path(run_dir), backend, existing=True) as run:
        return run.synthesis(loaded, config, retry_failed)


def dry_run_pipeline(pipeline: PipelineConfig, retry_failed: bool = False) -> list[StagePlan]:
    """What `run_pipeline` would still do, counting the profiles it would make as characters."""
    src = pipeline.personas
    personas = PersonaFile(
        src.path, fmt=src.format, column=src.column, skip_invalid=pipeline.skip_invalid, limit=src.limit
    )
    loaded = load_instruction_sources(pipeline.instructions, pipeline.skip_invalid)
    with _reading(Path(pipeline.run), pipeline.backend) as run:
        plans = [run.profiles(personas, pipeline.profiles, retry_failed)]
        # Every profile still to make counts as made: a stand-in with the right id, made when paired.
        planned = {
            persona.character_id: (lambda persona=persona: planned_character(persona, run.model))
            for persona in personas
        }
        return plans + run.synthesis(loaded, pipeline.synthesis, retry_failed, planned)
