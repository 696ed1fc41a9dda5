"""The pipeline as library calls: profiles, synthesis, the whole `run`, and exports.

The CLI, `demo`, `recipe` and the Python API all go through these; a command is: read inputs,
open a `RunSession`, hand stages and lazily made work items to its executor, `execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opencharacter.config import (
    BackendConfig,
    ExecutorConfig,
    InstructionSource,
    ModelPrice,
    PipelineConfig,
    ProfilesConfig,
    SynthesisConfig,
)
from opencharacter.errors import ConfigError
from opencharacter.executors import StageResult
from opencharacter.pipeline.plan import StagePlan, open_store, plan_profiles, plan_synthesis, planned_character
from opencharacter.pipeline.session import Reporter, RunSession, execute
from opencharacter.records import Character, Dialogue, Instruction, Persona, Strategy
from opencharacter.sources import LoadReport, load_instructions, load_personas
from opencharacter.stages import pairing
from opencharacter.stages.dialogues import DialogueStage, applies, dialogue_items
from opencharacter.stages.profiles import ProfileStage, profile_items
from opencharacter.store import RunStore
from opencharacter.store.lock import RunLock

LoadedSource = tuple[InstructionSource, list[Instruction], LoadReport]


# -- stages on a session ---------------------------------------------------------------------------
def profile_stage(session: RunSession, config: ProfilesConfig) -> ProfileStage:
    return ProfileStage(config.sampling, config.max_attempts, session.backend.model_id, config.prompt_version)


async def make_profiles(
    session: RunSession, personas: Sequence[Persona], config: ProfilesConfig, retry_failed: bool = False
) -> StageResult:
    stage = profile_stage(session, config)
    session.check_settings(stage.name, stage.settings)
    result = await session.executor.run(stage, profile_items(personas), total=len(personas), retry_failed=retry_failed)
    session.results.append(result)
    return result


class RecordedPairing:
    """Each instruction's characters, drawn the first time and then read back from the store.

    What keeps pairing stable as characters are added: an instruction paired when the run had 50
    characters keeps exactly those pairs after profiles for 200 more are made.
    """

    def __init__(self, store: RunStore, characters: dict[str, Character], per_instruction: int, seed: int) -> None:
        self.store, self.characters = store, characters
        self.pool = sorted(characters)
        self.per_instruction, self.seed = per_instruction, seed
        pairing.check_pool(len(self.pool), per_instruction)

    def characters_for(self, instruction: Instruction) -> list[Character]:
        qid = instruction.question_id
        recorded = self.store.get_record(pairing.STAGE, qid, pairing.InstructionPairing)
        kept = recorded.character_ids if recorded is not None else []
        ids = pairing.draw(qid, self.pool, self.per_instruction, self.seed, kept)
        if len(ids) > len(kept):
            record = pairing.InstructionPairing(question_id=qid, character_ids=ids)
            self.store.put_record(pairing.STAGE, qid, qid, record)
        return [self.characters[c] for c in ids]


def check_synthesis(session: RunSession, stage: DialogueStage, strategies: Sequence[Strategy], record: bool) -> None:
    """Refuse settings that differ from what the run's dialogues were made with (see check_settings)."""
    config = stage.config
    recorded = session.store.get_meta("pairing")
    if recorded is not None:
        if recorded["seed"] != config.seed:
            raise ConfigError(
                f"{session.run_dir} pairs instructions with seed {recorded['seed']}, not {config.seed}: "
                "use a new --out for another pairing"
            )
        if config.per_instruction < recorded["per_instruction"]:
            raise ConfigError(
                f"{session.run_dir} already has {recorded['per_instruction']} characters per instruction; "
                f"--per-instruction {config.per_instruction} would leave the others in its files: use a new --out"
            )
    if config.candidates > 1:  # fail now, not after generating k× the dialogues
        from opencharacter.models.embedder import embedder_path

        embedder_path()
    if record and (recorded is None or config.per_instruction > recorded["per_instruction"]):
        session.store.set_meta("pairing", {"seed": config.seed, "per_instruction": config.per_instruction})
    for strategy in strategies:
        session.check_settings(f"{stage.name}:{strategy}", stage.settings(strategy), record=record)


async def synthesize(
    session: RunSession,
    instructions: Sequence[Instruction],
    strategies: Sequence[Strategy],
    config: SynthesisConfig,
    retry_failed: bool = False,
) -> list[StageResult]:
    """Dialogues for every (instruction, paired character, strategy), one stage result per strategy."""
    stage = DialogueStage(config, session.backend.model_id)
    characters = {c.character_id: c for c in session.store.records("profiles", Character)}
    pairs = RecordedPairing(session.store, characters, config.per_instruction, config.seed)
    check_synthesis(session, stage, strategies, record=True)
    outcomes = []
    for strategy in strategies:
        applicable = sum(1 for instruction in instructions if applies(instruction, strategy))
        paired = (
            (index, instruction, pairs.characters_for(instruction))
            for index, instruction in enumerate(instructions)
            if applies(instruction, strategy)
        )
        result = await session.executor.run(
            stage,
            dialogue_items(paired, strategy, config.candidates),
            total=applicable * config.per_instruction * config.candidates,
            retry_failed=retry_failed,
            label=strategy,
        )
        if applicable < len(instructions):
            result.notes.append(
                f"{len(instructions) - applicable} of {len(instructions)} instructions have no answer to rewrite "
                "(rewrite needs an answer for every user turn; generate works without)"
            )
        session.results.append(result)
        outcomes.append(result)
    return outcomes


async def select(session: RunSession, config: SynthesisConfig) -> None:
    """With `synthesis.candidates` > 1: keep each pair's best candidate (see `opencharacter.selection`).

    Runs here, in the driving process, after every stage worker is done: the embedder is loaded
    once, and only when some pair has new candidates or new selection settings.
    """
    if config.candidates < 2:
        return
    from opencharacter.selection.runner import select_candidates_async

    summary = await select_candidates_async(session.store, config.selection, config.seed)
    meta = summary.as_meta()
    result = StageResult("selection", total=summary.pairs, done_before=summary.pairs - summary.scored_now)
    result.made = summary.scored_now
    result.notes.append(
        f"{summary.kept} of {summary.pairs} pairs kept from {summary.candidates} candidates"
        f" ({summary.dropped} dropped below chance, {summary.preferences} preference pairs);"
        f" mean reciprocal rank of the kept {meta['mean_best_rr']:.3f}"
        f" vs the first candidates' {meta['mean_first_rr']:.3f}"
    )
    session.results.append(result)


# -- whole commands ----------------------------------------------------------------------------------
def load_instruction_sources(sources: list[InstructionSource], skip_invalid: bool) -> list[LoadedSource]:
    loaded = []
    for source in sources:
        instructions, report = load_instructions(
            source.path, fmt=source.format, skip_invalid=skip_invalid, limit=source.limit, source_name=source.name
        )
        loaded.append((source, instructions, report))
    return loaded


def run_profiles(
    run_dir: str | Path,
    personas: Sequence[Persona],
    config: ProfilesConfig,
    backend: BackendConfig,
    *,
    executor: ExecutorConfig | None = None,
    show_progress: bool = True,
    **options: Any,
) -> RunSession:
    """`opencharacter profiles`: one profile per persona into `run_dir` (created if missing)."""
    session = RunSession(Path(run_dir), backend, "profiles", show_progress, executor or ExecutorConfig())
    return profiles_on(session, personas, config, **options)


def profiles_on(
    session: RunSession,
    personas: Sequence[Persona],
    config: ProfilesConfig,
    *,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    record: dict | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    after: Callable[[RunSession], None] | None = None,
) -> RunSession:
    """Profiles on an opened session (a run directory, or one shard of it); `after` runs once the files
    are written and before an incomplete run raises (a shard marks itself finished there)."""
    session.use_prices(prices)
    session.record_config("profiles", {**(record or {}), **config.model_dump(mode="json")})

    async def steps() -> None:
        await make_profiles(session, personas, config, retry_failed)

    execute(session, steps, reporter)
    if after is not None:
        after(session)
    session.raise_if_incomplete()
    return session


def run_synthesis(
    run_dir: str | Path,
    loaded: list[LoadedSource],
    config: SynthesisConfig,
    backend: BackendConfig,
    *,
    executor: ExecutorConfig | None = None,
    show_progress: bool = True,
    **options: Any,
) -> RunSession:
    """`opencharacter synthesize`: dialogues for each source's strategies, in an existing run."""
    session = RunSession(
        Path(run_dir), backend, "synthesize", show_progress, executor or ExecutorConfig(),
        create=False,
    )  # fmt: skip
    return synthesis_on(session, loaded, config, **options)


def synthesis_on(
    session: RunSession,
    loaded: list[LoadedSource],
    config: SynthesisConfig,
    *,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    record: dict | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    after: Callable[[RunSession], None] | None = None,
    selection: bool = True,
) -> RunSession:
    """Dialogues on an opened session (a run directory, or one shard of it); see `profiles_on`.

    `selection` False leaves the candidates unselected: a shard holds only some of a pair's
    candidates, so the run selects once they are merged (any later `synthesize` of the run does).
    """
    try:
        session.use_prices(prices)
        stage = DialogueStage(config, session.backend.model_id)
        check_synthesis(session, stage, sorted({s for src, _, _ in loaded for s in src.strategies}), record=False)
        session.record_config("synthesis", {**(record or {}), **config.model_dump(mode="json")})
    except BaseException:
        session.abandon()
        raise

    async def steps() -> None:
        for source, instructions, _ in loaded:
            await synthesize(session, instructions, list(source.strategies), config, retry_failed)
        if selection:
            await select(session, config)

    execute(session, steps, reporter)
    if after is not None:
        after(session)
    session.raise_if_incomplete()
    return session


def run_pipeline(
    pipeline: PipelineConfig,
    retry_failed: bool = False,
    quiet: bool = False,
    reporter: Reporter | None = None,
    fail_on_incomplete: bool = True,
) -> Path:
    """`opencharacter run` (and `demo`): profiles → dialogues → filters → exports, from one config.

    Raises RunIncomplete at the end when items failed, unless `fail_on_incomplete` is False (the
    demo, whose tiny embedded model is expected to fail an item now and then, goes on to train).
    """
    reporter = reporter or Reporter()
    src = pipeline.personas
    personas, persona_report = load_personas(
        src.path, fmt=src.format, column=src.column, skip_invalid=pipeline.skip_invalid, limit=src.limit
    )
    loaded = load_instruction_sources(pipeline.instructions, pipeline.skip_invalid)
    reporter.loads([persona_report, *(report for _, _, report in loaded)])
    run = Path(pipeline.run)
    with RunLock(run, "run"):
        session = RunSession(run, pipeline.backend, "run", not quiet, pipeline.executor)
        try:
            session.use_prices(pipeline.prices)
            session.check_settings("profiles", profile_stage(session, pipeline.profiles).settings, record=False)
            strategies = sorted({s for source, _, _ in loaded for s in source.strategies})
            check_synthesis(session, DialogueStage(pipeline.synthesis, session.backend.model_id), strategies, False)
            session.record_config("pipeline", pipeline.model_dump(mode="json", exclude={"backend"}))
        except BaseException:
            session.abandon()
            raise

        async def steps() -> None:
            await make_profiles(session, personas, pipeline.profiles, retry_failed)
            for source, instructions, _ in loaded:
                await synthesize(session, instructions, list(source.strategies), pipeline.synthesis, retry_failed)
            await select(session, pipeline.synthesis)

        execute(session, steps, reporter)
        if pipeline.filters is not None:
            from opencharacter.filters import apply_filters

            reporter.filtered(*apply_filters(pipeline.run, pipeline.filters))
        for fmt in pipeline.export:
            path, rows = export_run(run, fmt)
            reporter.note(f"wrote {rows} dialogues to {path}")
    if fail_on_incomplete:
        session.raise_if_incomplete()
    return run


# -- dry runs --------------------------------------------------------------------------------------
def _teacher_id(backend: BackendConfig) -> str:
    """The model id records would carry, without loading a model (backends load lazily)."""
    import asyncio

    from opencharacter.backends import build_backend

    built = build_backend(backend)
    try:
        return built.model_id
    finally:
        asyncio.run(built.aclose())


def dry_run_profiles(
    run_dir: str | Path, personas: Sequence[Persona], config: ProfilesConfig, backend: BackendConfig,
    retry_failed: bool = False,
) -> list[StagePlan]:  # fmt: skip
    """What `run_profiles` would still do; calls no model and writes nothing."""
    store = open_store(Path(run_dir))
    try:
        return [plan_profiles(store, personas, config, _teacher_id(backend), retry_failed)[0]]
    finally:
        if store is not None:
            store.close()


def dry_run_synthesis(
    run_dir: str | Path, loaded: list[LoadedSource], config: SynthesisConfig, backend: BackendConfig,
    retry_failed: bool = False,
) -> list[StagePlan]:  # fmt: skip
    """What `run_synthesis` would still do with the run's characters; calls no model, writes nothing."""
    store = open_store(Path(run_dir))
    if store is None:
        raise ConfigError(f"{run_dir} is not a run directory yet: run `opencharacter profiles` first")
    try:
        characters = {c.character_id: c for c in store.records("profiles", Character)}
        model = _teacher_id(backend)
        return [
            plan
            for source, instructions, _ in loaded
            for plan in plan_synthesis(store, instructions, source.strategies, config, model, characters, retry_failed)
        ]
    finally:
        store.close()


def dry_run_pipeline(pipeline: PipelineConfig, retry_failed: bool = False) -> list[StagePlan]:
    """What `run_pipeline` would still do, counting the profiles it would make as characters."""
    src = pipeline.personas
    personas, _ = load_personas(
        src.path, fmt=src.format, column=src.column, skip_invalid=pipeline.skip_invalid, limit=src.limit
    )
    loaded = load_instruction_sources(pipeline.instructions, pipeline.skip_invalid)
    store = open_store(Path(pipeline.run))
    try:
        model = _teacher_id(pipeline.backend)
        plan, _ = plan_profiles(store, personas, pipeline.profiles, model, retry_failed)
        characters = {c.character_id: c for c in store.records("profiles", Character)} if store else {}
        for persona in personas:  # assume every profile still to make will be made
            characters.setdefault(persona.character_id, planned_character(persona, model))
        plans = [plan]
        for source, instructions, _ in loaded:
            plans += plan_synthesis(
                store, instructions, source.strategies, pipeline.synthesis, model, characters, retry_failed
            )
        return plans
    finally:
        if store is not None:
            store.close()


def export_run(run: Path, fmt: str, out: Path | None = None) -> tuple[Path, int]:
    """One export of a run's dialogues (or `cards`: its characters); returns the path and row count."""
    from opencharacter.export.formats import export_cards, export_dialogues

    if not (run / "store.sqlite").exists():
        raise ConfigError(f"{run} is not a run directory (no store.sqlite); make one with `opencharacter profiles`")
    with RunLock(run, "export"):
        store = RunStore(run)
        try:
            if fmt == "cards":
                return export_cards(list(store.records("profiles", Character)), out or run / "exports" / "cards")
            from opencharacter.selection import dialogue_stage

            dialogues = list(store.records(dialogue_stage(store), Dialogue))
            return export_dialogues(dialogues, fmt, out or run / "exports")
        finally:
            store.close()
