"""`opencharacter push`: a run (as a dataset) or a trained model to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli.report import console
from opencharacter.errors import ConfigError


def _size(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def show_plan(plan, url: str | None, dry_run: bool) -> None:
    kind = "dataset" if plan.repo_type == "dataset" else "model"
    visibility = "private" if plan.private else "public"
    if dry_run:
        console.print(f"dry run: would upload {len(plan.files)} files ({_size(plan.total_bytes)}) to the {visibility} "
                      f"{kind} repository {plan.repo_id}:")  # fmt: skip
        for name, size in plan.files:
            typer.echo(f"  {name}  ({_size(size)})")
        return
    console.print(f"uploaded {len(plan.files)} files ({_size(plan.total_bytes)}) to the {visibility} {kind} "
                  f"repository {plan.repo_id}: {url}")  # fmt: skip


def push_command(
    repo: Annotated[str, typer.Option("--repo", help="Hub repository: owner/name (created if missing).")],
    run: Annotated[Path | None, typer.Option("--run", help="Run directory to publish as a dataset.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Or: a `train --out` directory, as a model.")] = None,
    public: Annotated[bool, typer.Option("--public", help="Make a new repository public (default: private).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files that would go up; upload nothing.")
    ] = False,
    license: Annotated[
        str | None, typer.Option("--license", help="License for the card (default: the teacher's / base model's).")
    ] = None,
    token_env: Annotated[
        str | None, typer.Option("--token-env", help="Variable holding the Hub token (default: HF_TOKEN or login).")
    ] = None,
) -> None:
    """Upload a run's cards, JSONL, Parquet and character cards (never its store), or a model's files."""
    if (run is None) == (model is None):
        raise ConfigError("give exactly one of --run DIR or --model DIR")
    from opencharacter.export.hub import push_model, push_run

    if run is not None:
        plan, url = push_run(run, repo, private=not public, dry_run=dry_run, license=license, token_env=token_env)
    else:
        plan, url = push_model(model, repo, private=not public, dry_run=dry_run, license=license, token_env=token_env)
    show_plan(plan, url, dry_run)
