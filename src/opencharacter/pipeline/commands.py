"""The pipeline as library calls: profiles, synthesis, the whole `run`, and exports.

The CLI, `demo`, `recipe` and the Python API all go through these. A command is: scan its inputs
(every input error stops it before a run directory is made), open a `RunSession`, build each stage
once (`work.py`) and check it against the run, then hand the stage and its lazily made items to
the session's executor in `execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opencharacter.config import (
    BackendConfig,
    ExecutorConfig,
    ModelPrice,
    PipelineConfig,
    ProfilesConfig,
    SynthesisConfig,
)
from opencharacter.executors import StageResult

# Names this module has always offered, whose homes are now plan.py, work.py and sources/files.py:
from opencharacter.pipeline.plan import dry_run_pipeline as dry_run_pipeline
from opencharacter.pipeline.plan import dry_run_profiles as dry_run_profiles
from opencharacter.pipeline.plan import dry_run_synthesis as dry_run_synthesis
from opencharacter.pipeline.session import Reporter, RunSession, execute
from opencharacter.pipeline.work import ProfilesWork, SynthesisWork
from opencharacter.pipeline.work import RecordedPairing as RecordedPairing
from opencharacter.records import Character, Dialogue, Instruction, Persona, Strategy
from opencharacter.sources import PersonaFile
from opencharacter.sources.files import LoadedSource, load_instruction_sources
from opencharacter.stages.dialogues import DialogueStage
from opencharacter.stages.profiles import ProfileStage
from opencharacter.store import RunStore
from opencharacter.store.layout import CARDS, EXPORTS, existing_run
from opencharacter.store.lock import RunLock


# -- stages on a session ---------------------------------------------------------------------------
def profile_stage(session: RunSession, config: ProfilesConfig) -> ProfileStage:
    return ProfilesWork(config, session.backend.model_id).stage


async def make_profiles(
    session: RunSession,
    personas: Iterable[Persona],
    config: ProfilesConfig,
    retry_failed: bool = False,
    *,
    work: ProfilesWork | None = None,
) -> StageResult:
    """One profile per persona; `work` is the stage the command built (and checked) already."""
    work = work or ProfilesWork(config, session.backend.model_id)
    work.check(session.identity)
    result = await session.executor.run(
        work.stage, work.items(personas), total=work.total(personas), retry_failed=retry_failed
    )
    session.results.append(result)
    return result


def check_synthesis(session: RunSession, stage: DialogueStage, strategies: Sequence[Strategy], record: bool) -> None:
    """Refuse settings that differ from what the run's dialogues were made with (see check_settings)."""
    SynthesisWork(stage.config, stage.model, stage).check(session.identity, strategies, record=record)


async def synthesize(
    session: RunSession,
    instructions: Iterable[Instruction],
    strategies: Sequence[Strategy],
    config: SynthesisConfig,
    retry_failed: bool = False,
    *,
    work: SynthesisWork | None = None,
) -> list[StageResult]:
    """Dialogues for every (instruction, paired character, strategy), one stage result per strategy.

    `work` is the dialogue stage the command built (and checked) already; its pairing is drawn
    over the run's characters the first time it is needed (after this command's profiles)."""
    work = work or SynthesisWork(config, session.backend.model_id)
    work.check(session.identity, strategies, record=True)
    if work.pairs is None:
        work.pair(session.store)
    outcomes = []
    for strategy in strategies:
        seen, applicable = work.counts(instructions, strategy)
        result = await session.executor.run(
            work.stage,
            work.items(instructions, strategy),
            total=work.items_total(applicable),
            retry_failed=retry_failed,
            label=strategy,
        )
        if applicable < seen:
            result.notes.append(
                f"{seen - applicable} of {seen} instructions have no answer to rewrite "
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


def _strategies(loaded: Sequence[LoadedSource]) -> list[Strategy]:
    return sorted({strategy for source, _, _ in loaded for strategy in source.strategies})


# -- whole commands ----------------------------------------------------------------------------------
def run_profiles(
    run_dir: str | Path,
    personas: Iterable[Persona],
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
    personas: Iterable[Persona],
    config: ProfilesConfig,
    *,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    record: dict | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    after: Callable[[RunSession], None] | None = None,
) -> RunSession:
    """Profiles on a session (a run directory, or one shard of it); `after` runs once the files
    are written and before an incomplete run raises (a shard marks itself finished there)."""
    with session:
        session.use_prices(prices)
        work = ProfilesWork(config, session.backend.model_id)
        work.check(session.identity, record=False)
        session.record_config("profiles", {**(record or {}), **config.model_dump(mode="json")})

        async def steps() -> None:
            await make_profiles(session, personas, config, retry_failed, work=work)

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
    """Dialogues on a session (a run directory, or one shard of it); see `profiles_on`.

    `selection` False leaves the candidates unselected: a shard holds only some of a pair's
    candidates, so the run selects once they are merged (any later `synthesize` of the run does).
    """
    with session:
        session.use_prices(prices)
        work = SynthesisWork(config, session.backend.model_id)
        work.check(session.identity, _strategies(loaded), record=False)
        session.record_config("synthesis", {**(record or {}), **config.model_dump(mode="json")})

        async def steps() -> None:
            for source, instructions, _ in loaded:
                await synthesize(session, instructions, list(source.strategies), config, retry_failed, work=work)
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
    personas = PersonaFile(
        src.path, fmt=src.format, column=src.column, skip_invalid=pipeline.skip_invalid, limit=src.limit
    )
    loaded = load_instruction_sources(pipeline.instructions, pipeline.skip_invalid)
    reporter.loads([personas.report, *(report for _, _, report in loaded)])
    run = Path(pipeline.run)
    with RunLock(run, "run"), RunSession(run, pipeline.backend, "run", not quiet, pipeline.executor) as session:
        session.use_prices(pipeline.prices)
        model = session.backend.model_id
        profiles = ProfilesWork(pipeline.profiles, model)
        synthesis = SynthesisWork(pipeline.synthesis, model)
        profiles.check(session.identity, record=False)
        synthesis.check(session.identity, _strategies(loaded), record=False)
        session.record_config("pipeline", pipeline.model_dump(mode="json", exclude={"backend"}))

        async def steps() -> None:
            await make_profiles(session, personas, pipeline.profiles, retry_failed, work=profiles)
            for source, instructions, _ in loaded:
                strategies = list(source.strategies)
                await synthesize(session, instructions, strategies, pipeline.synthesis, retry_failed, work=synthesis)
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


def export_run(run: Path, fmt: str, out: Path | None = None) -> tuple[Path, int]:
    """One export of a run's dialogues (or `cards`: its characters); returns the path and row count."""
    from opencharacter.export.formats import export_cards, export_dialogues

    run = existing_run(run)
    with RunLock(run, "export"):
        store = RunStore(run)
        try:
            if fmt == "cards":
                return export_cards(store.records("profiles", Character), out or run / EXPORTS / CARDS)
            from opencharacter.selection import dialogue_stage

            return export_dialogues(store.records(dialogue_stage(store), Dialogue), fmt, out or run / EXPORTS)
        finally:
            store.close()
