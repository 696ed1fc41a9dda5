"""`profiles`, `synthesize`, `run` and `export`: the data side of the recipe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.report import print_loads, print_summary
from opencharacter.config import (
    InstructionSource,
    PipelineConfig,
    ProfilesConfig,
    SynthesisConfig,
    build,
)
from opencharacter.errors import ConfigError
from opencharacter.export.formats import EXPORT_FORMATS, export_cards, export_dialogues
from opencharacter.pipeline import RunSession, load_instruction_sources, make_profiles, synthesize
from opencharacter.records import Character, Dialogue
from opencharacter.sources import load_personas
from opencharacter.store import RunStore

if TYPE_CHECKING:
    from opencharacter.filters import FilterReport

RunDir = Annotated[Path, typer.Option("--run", "--out", help="Run directory (created if missing).")]


def profiles(
    personas: Annotated[Path, typer.Option("--personas", help="Persona file, datasets dir or hub dataset id.")],
    run: RunDir,
    persona_format: Annotated[
        str, typer.Option("--persona-format", help="auto, persona, personahub, text, dataset, cards.")
    ] = "auto",
    persona_column: Annotated[str | None, typer.Option("--persona-column", help="Column with the persona.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use at most this many personas.")] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    config: opt.ConfigFile = None,
    temperature: opt.Temperature = None,
    max_tokens: opt.MaxTokens = None,
    retry_failed: opt.RetryFailed = False,
    skip_invalid: opt.SkipInvalid = False,
    quiet: opt.Quiet = False,
) -> None:
    """Expand one-line personas into character profiles (name, age, …, personality)."""
    data, source, backend_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    )
    stage_config = build(
        ProfilesConfig, opt.section(data, "profiles", opt.sampling_overrides(temperature, max_tokens)), source
    )
    loaded, report = load_personas(
        personas, fmt=persona_format, column=persona_column, skip_invalid=skip_invalid, limit=limit
    )
    print_loads([report])
    session = RunSession(run, backend_config, "profiles", show_progress=not quiet)
    session.record_config("profiles", {"personas": str(personas), **stage_config.model_dump(mode="json")})
    _run(session, make_profiles(session, loaded, stage_config, retry_failed))


def synthesize_command(
    instructions: Annotated[list[Path], typer.Option("--instructions", help="Instruction file(s); repeatable.")],
    run: RunDir,
    strategy: Annotated[
        list[str] | None,
        typer.Option("--strategy", help="generate (G, default) and/or rewrite (R); repeatable."),
    ] = None,
    instruction_format: Annotated[
        str, typer.Option("--format", help="auto, alpaca, lima, personahub, sharegpt, messages.")
    ] = "auto",
    per_instruction: Annotated[
        int | None, typer.Option("--per-instruction", help="Characters per instruction (default 3).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Pairing seed (default 0).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use at most this many instructions per file.")] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    config: opt.ConfigFile = None,
    temperature: opt.Temperature = None,
    max_tokens: opt.MaxTokens = None,
    retry_failed: opt.RetryFailed = False,
    skip_invalid: opt.SkipInvalid = False,
    quiet: opt.Quiet = False,
) -> None:
    """Answer instructions in character: rewrite (R) the original answers or generate (G) new ones."""
    strategy = strategy or ["generate"]
    data, source, backend_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    )
    overrides = {k: v for k, v in {"per_instruction": per_instruction, "seed": seed}.items() if v is not None}
    section = {**opt.section(data, "synthesis", opt.sampling_overrides(temperature, max_tokens)), **overrides}
    stage_config = build(SynthesisConfig, section, source)
    for name in strategy:
        if name not in ("generate", "rewrite"):
            raise ConfigError(f"--strategy must be generate or rewrite, got {name!r}")
    sources = [
        build(
            InstructionSource,
            {"path": str(p), "format": instruction_format, "strategies": strategy, "limit": limit},
            source,
        )
        for p in instructions
    ]
    loaded = load_instruction_sources(sources, skip_invalid)
    print_loads([report for _, _, report in loaded])
    session = RunSession(run, backend_config, "synthesize", show_progress=not quiet)
    session.record_config(
        "synthesis",
        {
            "instructions": [str(p) for p in instructions],
            "strategies": strategy,
            **stage_config.model_dump(mode="json"),
        },
    )

    async def steps() -> None:
        for src, items, _ in loaded:
            await synthesize(session, items, list(src.strategies), stage_config, retry_failed)

    _run(session, steps())


def run_command(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML: run, backend, personas, instructions, …")],
    run: Annotated[Path | None, typer.Option("--run", "--out", help="Override the run directory.")] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    concurrency: opt.Concurrency = None,
    batch_size: opt.BatchSize = None,
    retry_failed: opt.RetryFailed = False,
    skip_invalid: opt.SkipInvalid = False,
    quiet: opt.Quiet = False,
) -> None:
    """Run the whole pipeline from one YAML file: profiles → dialogues → exports."""
    overrides: dict = {}
    backend_flags = opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    if backend_flags:
        overrides["backend"] = backend_flags
    if run is not None:
        overrides["run"] = str(run)
    if skip_invalid:
        overrides["skip_invalid"] = True
    pipeline = opt.pipeline_config(config, overrides)
    run_pipeline(pipeline, retry_failed=retry_failed, quiet=quiet)


def run_pipeline(pipeline: PipelineConfig, retry_failed: bool = False, quiet: bool = False) -> Path:
    src = pipeline.personas
    personas, persona_report = load_personas(
        src.path, fmt=src.format, column=src.column, skip_invalid=pipeline.skip_invalid, limit=src.limit
    )
    loaded = load_instruction_sources(pipeline.instructions, pipeline.skip_invalid)
    print_loads([persona_report, *(report for _, _, report in loaded)])
    session = RunSession(Path(pipeline.run), pipeline.backend, "run", show_progress=not quiet)
    session.record_config("pipeline", pipeline.model_dump(mode="json", exclude={"backend"}))

    async def steps() -> None:
        await make_profiles(session, personas, pipeline.profiles, retry_failed)
        for source, items, _ in loaded:
            await synthesize(session, items, list(source.strategies), pipeline.synthesis, retry_failed)

    _run(session, steps())
    if pipeline.filters is not None:
        from opencharacter.filters import apply_filters

        print_filter_report(*apply_filters(pipeline.run, pipeline.filters))
    for fmt in pipeline.export:
        export_run(Path(pipeline.run), fmt, None)
    return Path(pipeline.run)


def _run(session: RunSession, steps) -> None:
    async def main() -> None:
        try:
            await steps
        finally:
            await session.close()

    asyncio.run(main())
    print_summary(session)


def export_run(run: Path, fmt: str, out: Path | None) -> Path:
    if not (run / "store.sqlite").exists():
        raise ConfigError(f"{run} is not a run directory (no store.sqlite); make one with `opencharacter profiles`")
    store = RunStore(run)
    try:
        if fmt == "cards":
            path, rows = export_cards(list(store.records("profiles", Character)), out or run / "exports" / "cards")
            typer.echo(f"wrote {rows} character cards (JSON and PNG) to {path}")
            return path
        dialogues = list(store.records("dialogues", Dialogue))
    finally:
        store.close()
    path, rows = export_dialogues(dialogues, fmt, out or run / "exports")
    typer.echo(f"wrote {rows} dialogues to {path}")
    return path


def export_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory.")],
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help=f"{', '.join(EXPORT_FORMATS)}, cards; repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the files (default RUN/exports).")] = None,
) -> None:
    """Write the run's dialogues as ShareGPT, Alpaca, messages JSONL or Parquet."""
    for name in fmt or ["messages"]:
        export_run(run, name, out)


def filter_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory to filter.")],
    out: Annotated[Path | None, typer.Option("--out", help="Where the survivors go (default RUN/filtered).")] = None,
    config: opt.ConfigFile = None,
) -> None:
    """Drop near-duplicate profiles, out-of-character, parroting, out-of-bounds and truncated answers."""
    from opencharacter.config import FiltersConfig
    from opencharacter.filters import apply_filters

    if not (run / "store.sqlite").exists():
        raise ConfigError(f"{run} is not a run directory (no store.sqlite)")
    data = opt.config_data(config)
    filters = build(FiltersConfig, dict(data.get("filters") or {}), str(config or "defaults"))
    target, report = apply_filters(run, filters, out)
    print_filter_report(target, report)


def print_filter_report(target: Path, report: FilterReport) -> None:
    from opencharacter.cli.report import console

    console.print(
        f"filtered: {report.dialogues_out} of {report.dialogues_in} dialogues and "
        f"{report.characters_out} of {report.characters_in} characters kept → {target}"
    )
    for reason, count in sorted(report.removed.items(), key=lambda item: -item[1]):
        console.print(f"  removed {count:>5}  {reason}")
    for note in report.notes:
        console.print(f"  note: {note}")
