"""`opencharacter import`: data someone already made, as a run directory (the paper's release, for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from opencharacter.cli.report import console
from opencharacter.errors import ConfigError

IMPORT_SOURCES = ("opencharacter-release",)


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="The release's directory (synthetic_character.jsonl, synthetic_dialogue.jsonl), "
            "or hf:xywang1/OpenCharacter to download it from the Hub."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory to make (or resume).")],
    kind: Annotated[
        str, typer.Option("--from", help="What SOURCE is: opencharacter-release (the paper's data).")
    ] = "opencharacter-release",
    strategy: Annotated[
        Literal["generate", "rewrite"],
        typer.Option("--strategy", help="What to label the dialogues (the release does not say per row)."),
    ] = "generate",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Import at most this many dialogues (a rerun can raise it).")
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="With hf:…: a branch, tag or commit of the dataset.")
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="License for the run's dataset card (default: the release's).")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip malformed lines and report them, instead of stopping.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Turn released data into a run directory that train, filter, export and eval --run accept."""
    if kind not in IMPORT_SOURCES:
        raise ConfigError(f"--from {kind!r}: choose one of {', '.join(IMPORT_SOURCES)}")
    if revision is not None and not source.startswith("hf:"):
        raise ConfigError("--revision applies to a hub dataset (hf:owner/name), not to a local directory")
    from opencharacter.pipeline.release_import import import_release

    def progress(report) -> None:
        if not quiet:
            console.print(
                f"  {report.dialogues_read} dialogue lines read, {report.dialogues_kept} imported", style="dim"
            )

    report = import_release(
        source, out, strategy=strategy, limit=limit, skip_invalid=skip_invalid, revision=revision,
        license=license, progress=progress,
    )  # fmt: skip
    console.print(f"imported {report.origin} into {out}")
    for line in report.lines():
        console.print(f"  {line}")
    console.print(f"next: opencharacter train --run {out} --out models/<name>")
