"""`profiles`, `synthesize`, `run` and `export`: the data side of the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.merge import Shard, sharded
from opencharacter.cli.report import ConsoleReporter, print_filter_report, print_loads, print_plan
from opencharacter.config import InstructionSource, ProfilesConfig, SynthesisConfig, build
from opencharacter.errors import ConfigError
from opencharacter.export.formats import EXPORT_FORMATS
from opencharacter.pipeline import (
    dry_run_pipeline,
    dry_run_profiles,
    dry_run_synthesis,
    export_run,
    load_instruction_sources,
    run_pipeline,
    run_profiles,
    run_synthesis,
)
from opencharacter.sources import PersonaFile
from opencharacter.store.layout import existing_run

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
    executor: opt.ExecutorKind = None,
    ray_address: opt.RayAddress = None,
    workers: opt.Workers = None,
    dry_run: opt.DryRun = False,
    shard: Shard = None,
) -> None:
    """Expand one-line personas into character profiles (name, age, …, personality)."""
    data, source, backend_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    )
    executor_config = opt.executor_config(data, opt.executor_overrides(executor, ray_address, workers), source)
    stage_config = build(
        ProfilesConfig, opt.section(data, "profiles", opt.sampling_overrides(temperature, max_tokens)), source
    )
    loaded = PersonaFile(personas, fmt=persona_format, column=persona_column, skip_invalid=skip_invalid, limit=limit)
    print_loads([loaded.report])
    prices = opt.prices(data, source)
    if dry_run:
        print_plan(dry_run_profiles(run, loaded, stage_config, backend_config, retry_failed), prices)
        return
    sharded(run_profiles, shard)(
        run, loaded, stage_config, backend_config, executor=executor_config, retry_failed=retry_failed,
        show_progress=not quiet, reporter=ConsoleReporter(), record={"personas": str(personas)}, prices=prices,
    )  # fmt: skip


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
    candidates: Annotated[
        int | None,
        typer.Option("--candidates", help="Candidate dialogues per pair; the most in-character is kept (default 1)."),
    ] = None,
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
    executor: opt.ExecutorKind = None,
    ray_address: opt.RayAddress = None,
    workers: opt.Workers = None,
    dry_run: opt.DryRun = False,
    shard: Shard = None,
) -> None:
    """Answer instructions in character: rewrite (R) the original answers or generate (G) new ones."""
    strategy = strategy or ["generate"]
    data, source, backend_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    )
    executor_config = opt.executor_config(data, opt.executor_overrides(executor, ray_address, workers), source)
    chosen = {"per_instruction": per_instruction, "seed": seed, "candidates": candidates}
    overrides = {k: v for k, v in chosen.items() if v is not None}
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
    prices = opt.prices(data, source)
    if dry_run:
        print_plan(dry_run_synthesis(run, loaded, stage_config, backend_config, retry_failed), prices)
        return
    sharded(run_synthesis, shard)(
        run, loaded, stage_config, backend_config, executor=executor_config, retry_failed=retry_failed,
        show_progress=not quiet, reporter=ConsoleReporter(),
        record={"instructions": [str(p) for p in instructions], "strategies": strategy}, prices=prices,
    )  # fmt: skip


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
    executor: opt.ExecutorKind = None,
    ray_address: opt.RayAddress = None,
    workers: opt.Workers = None,
    dry_run: opt.DryRun = False,
) -> None:
    """Run the whole pipeline from one YAML file: profiles → dialogues → exports."""
    overrides: dict = {}
    backend_flags = opt.backend_overrides(backend, model, base_url, api_key_env, concurrency, batch_size)
    if backend_flags:
        overrides["backend"] = backend_flags
    executor_flags = opt.executor_overrides(executor, ray_address, workers)
    if executor_flags:
        overrides["executor"] = executor_flags
    if run is not None:
        overrides["run"] = str(run)
    if skip_invalid:
        overrides["skip_invalid"] = True
    pipeline = opt.pipeline_config(config, overrides)
    if dry_run:
        print_plan(dry_run_pipeline(pipeline, retry_failed))
        return
    made = run_pipeline(pipeline, retry_failed=retry_failed, quiet=quiet, reporter=ConsoleReporter())
    if pipeline.export:
        from opencharacter.cli.exports import refresh_cards

        refresh_cards(made)  # the exports written after the run's card get theirs


def export_command(
    run: Annotated[Path | None, typer.Option("--run", help="Run directory.")] = None,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help=f"{', '.join(EXPORT_FORMATS)}, cards, gguf; repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the files (default RUN/exports).")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="gguf: a `train --out` model directory.")] = None,
    gguf_type: Annotated[
        list[str] | None, typer.Option("--gguf-type", help="gguf: f16 (default) and/or q8_0; repeatable.")
    ] = None,
    card_version: Annotated[int, typer.Option("--card-version", help="cards: Character Card V2 or 3.")] = 2,
) -> None:
    """Write the run's dialogues as ShareGPT, Alpaca, messages JSONL or Parquet (or cards; or a model as GGUF)."""
    from opencharacter.cli.exports import refresh_cards, special_exports

    for name in special_exports(run, fmt or ["messages"], out, model, gguf_type, card_version):
        path, rows = export_run(run, name, out)
        what = "character cards (JSON and PNG)" if name == "cards" else "dialogues"
        typer.echo(f"wrote {rows} {what} to {path}")
    refresh_cards(run)


def filter_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory to filter.")],
    out: Annotated[Path | None, typer.Option("--out", help="Where the survivors go (default RUN/filtered).")] = None,
    config: opt.ConfigFile = None,
) -> None:
    """Drop near-duplicate profiles, out-of-character, parroting, out-of-bounds and truncated answers."""
    from opencharacter.config import FiltersConfig
    from opencharacter.filters import apply_filters

    existing_run(run)
    data = opt.config_data(config)
    filters = build(FiltersConfig, dict(data.get("filters") or {}), str(config or "defaults"))
    target, report = apply_filters(run, filters, out)
    print_filter_report(target, report)
