"""`opencharacter batch export|import`: run a stage through OpenAI's Batch API (or `vllm run-batch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.report import print_loads
from opencharacter.config import InstructionSource, ProfilesConfig, SynthesisConfig, build
from opencharacter.errors import ConfigError

app = typer.Typer(help="Batch files: export a stage's pending calls, import the provider's answers.")

RunDir = Annotated[Path, typer.Option("--run", "--out", help="Run directory.")]
STAGES = ("profiles", "generate", "rewrite")


@app.command("export")
def export_command(
    run: RunDir,
    stage: Annotated[str, typer.Option("--stage", help="profiles, generate or rewrite.")],
    personas: Annotated[Path | None, typer.Option("--personas", help="profiles: the persona file.")] = None,
    persona_format: Annotated[str, typer.Option("--persona-format", help="As for `profiles`.")] = "auto",
    persona_column: Annotated[str | None, typer.Option("--persona-column", help="Column with the persona.")] = None,
    instructions: Annotated[
        list[Path] | None, typer.Option("--instructions", help="generate/rewrite: instruction file(s).")
    ] = None,
    instruction_format: Annotated[str, typer.Option("--format", help="As for `synthesize`.")] = "auto",
    per_instruction: Annotated[int | None, typer.Option("--per-instruction", help="As for `synthesize`.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Pairing seed, as for `synthesize`.")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="As for `synthesize`.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many personas / per file.")] = None,
    backend: opt.Backend = None,
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    config: opt.ConfigFile = None,
    temperature: opt.Temperature = None,
    max_tokens: opt.MaxTokens = None,
    retry_failed: opt.RetryFailed = False,
    skip_invalid: opt.SkipInvalid = False,
) -> None:
    """Write the calls a stage still needs as Batch API JSONL under RUN/batch (give the stage's own options)."""
    from opencharacter.pipeline import load_instruction_sources
    from opencharacter.pipeline.batch import export_dialogues, export_profiles
    from opencharacter.sources import PersonaFile

    if stage not in STAGES:
        raise ConfigError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    data, source, backend_config = opt.load_config(
        config, opt.backend_overrides(backend, model, base_url, api_key_env, None, None)
    )
    sampling = opt.sampling_overrides(temperature, max_tokens)
    if stage == "profiles":
        if personas is None:
            raise ConfigError("--stage profiles needs --personas (the file you give `opencharacter profiles`)")
        profiles_config = build(ProfilesConfig, opt.section(data, "profiles", sampling), source)
        loaded = PersonaFile(
            personas, fmt=persona_format, column=persona_column, skip_invalid=skip_invalid, limit=limit
        )
        print_loads([loaded.report])
        results = [export_profiles(run, loaded, profiles_config, backend_config, retry_failed)]
    else:
        if not instructions:
            raise ConfigError(f"--stage {stage} needs --instructions (the files you give `opencharacter synthesize`)")
        chosen = {"per_instruction": per_instruction, "seed": seed, "candidates": candidates}
        overrides = {k: v for k, v in chosen.items() if v is not None}
        synthesis = build(SynthesisConfig, {**opt.section(data, "synthesis", sampling), **overrides}, source)
        sources = [
            build(
                InstructionSource,
                {"path": str(p), "format": instruction_format, "strategies": [stage], "limit": limit},
                source,
            )
            for p in instructions
        ]
        loaded_sources = load_instruction_sources(sources, skip_invalid)
        print_loads([report for _, _, report in loaded_sources])
        per_file = [items for _, items, _ in loaded_sources]
        results = [export_dialogues(run, per_file, stage, synthesis, backend_config, retry_failed)]  # type: ignore[arg-type]
    for result in results:
        typer.echo(
            f"{result.stage}: {result.items} items, {result.done} done, {result.failed_before} failed before, "
            f"{result.ready} complete from the cache, {result.pending_items} waiting for {len(result.requests)} calls"
            + (f", {result.would_fail} would fail (answers rejected)" if result.would_fail else "")
        )
        for path in result.files:
            typer.echo(f"wrote {path}")
        if result.requests:
            typer.echo(f"next: submit the file(s), then `opencharacter batch import --run {run} OUTPUT.jsonl`")
        if result.later_turns:
            typer.echo(
                f"{result.later_turns} dialogues have turns left: after the import, export and import "
                "again (one round per turn) before rerunning the stage"
            )
        elif not result.requests:
            typer.echo("nothing to export: rerun the stage with the same options to finish from the cache")


@app.command("import")
def import_command(
    files: Annotated[list[Path], typer.Argument(help="The provider's batch output file(s).")],
    run: RunDir,
) -> None:
    """Put a batch output file's answers into the run's call cache; then rerun the stage (or export the next round)."""
    from opencharacter.pipeline.batch import import_results

    result = import_results(run, files)
    typer.echo(f"stored {result.stored} answers")
    if result.errors or result.unknown or result.malformed:
        typer.echo(
            f"not stored: {result.errors} errors, {result.unknown} unknown custom_ids, "
            f"{result.malformed} malformed lines"
        )
        for line in result.problems:
            typer.echo(f"  {line}")
