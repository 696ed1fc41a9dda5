"""The pipeline as library calls: profiles, synthesis and the run directory's output files.

The CLI is a thin layer over these; so is `opencharacter run`, which chains them from one YAML file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.backends import Backend, build_backend
from opencharacter.config import BackendConfig, InstructionSource, ProfilesConfig, SynthesisConfig
from opencharacter.engine import Engine, StageResult, run_stage
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import ConfigError
from opencharacter.export.run_files import write_run_files
from opencharacter.records import Character, Instruction, Persona, Strategy
from opencharacter.sources import LoadReport, load_instructions
from opencharacter.stages import dialogues as dialogue_stage
from opencharacter.stages import profiles as profile_stage
from opencharacter.stages.pairing import pair
from opencharacter.store import RunStore


@dataclass
class RunSession:
    """A backend, a store and an engine for one command on one run directory."""

    run_dir: Path
    backend_config: BackendConfig
    command: str
    show_progress: bool = True
    store: RunStore = field(init=False)
    backend: Backend = field(init=False)
    engine: Engine = field(init=False)
    progress: StageProgress = field(init=False)
    results: list[StageResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.store = RunStore(self.run_dir)
        self.backend = build_backend(self.backend_config)
        self._check_teacher()
        self.engine = Engine(
            self.backend,
            self.store,
            concurrency=self.backend_config.concurrency,
            max_retries=self.backend_config.max_retries,
        )
        self.progress = StageProgress(self.engine.stats, enabled=self.show_progress)

    def _check_teacher(self) -> None:
        """A run directory is one teacher's dataset: resuming with another model would silently mix
        two models' answers (finished records are kept, new ones come from the new model)."""
        recorded = self.store.get_meta("teacher")
        if recorded is None:
            self.store.set_meta("teacher", self.backend.model_id)
        elif recorded != self.backend.model_id:
            self.store.close()
            raise ConfigError(
                f"{self.run_dir} holds data made by {recorded}, not {self.backend.model_id}: "
                "use a new --out to make data with another model"
            )

    def record_config(self, key: str, value: Any) -> None:
        history = self.store.get_meta("commands", [])
        history.append({"command": self.command, key: value, "backend": self._public_backend_config()})
        self.store.set_meta("commands", history)

    def _public_backend_config(self) -> dict[str, Any]:
        # The key's *name* is recorded, never its value (BackendConfig cannot even hold a key).
        return self.backend_config.model_dump(mode="json")

    async def close(self) -> None:
        self.progress.close()
        await self.backend.aclose()
        stats = self.engine.stats
        self.store.add_session(
            self.command,
            self.started_wall,
            time.monotonic() - self.started,
            stats.new_calls,
            stats.cached_calls,
        )
        write_run_files(self.store)
        self.store.close()


async def make_profiles(
    session: RunSession, personas: list[Persona], config: ProfilesConfig, retry_failed: bool = False
) -> StageResult:
    work = profile_stage.profile_worker(session.engine, config.sampling, config.max_attempts, config.prompt_version)
    result = await run_stage(
        profile_stage.STAGE,
        profile_stage.profile_items(personas),
        work,
        engine=session.engine,
        max_attempts=config.max_attempts,
        retry_failed=retry_failed,
        progress=session.progress,
    )
    session.results.append(result)
    return result


async def synthesize(
    session: RunSession,
    instructions: list[Instruction],
    strategies: list[Strategy],
    config: SynthesisConfig,
    retry_failed: bool = False,
) -> list[tuple[StageResult, int]]:
    """Dialogues for every (instruction, paired character, strategy); returns results and skipped counts."""
    characters = list(session.store.records(profile_stage.STAGE, Character))
    pairs = pair(instructions, characters, config.per_instruction, config.seed)
    maker = dialogue_stage.DialogueMaker(session.engine, config)
    outcomes = []
    for strategy in strategies:
        items, skipped = dialogue_stage.dialogue_items(pairs, strategy)
        result = await run_stage(
            dialogue_stage.STAGE,
            items,
            maker.work,
            engine=session.engine,
            max_attempts=config.max_attempts,
            retry_failed=retry_failed,
            progress=session.progress,
            label=strategy,
        )
        session.results.append(result)
        outcomes.append((result, skipped))
    return outcomes


def load_instruction_sources(
    sources: list[InstructionSource], skip_invalid: bool
) -> list[tuple[InstructionSource, list[Instruction], LoadReport]]:
    loaded = []
    for source in sources:
        instructions, report = load_instructions(
            source.path,
            fmt=source.format,
            skip_invalid=skip_invalid,
            limit=source.limit,
            source_name=source.name,
        )
        loaded.append((source, instructions, report))
    return loaded
