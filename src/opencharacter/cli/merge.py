"""`opencharacter merge`: fold the shard stores of a run (made with `--shard i/N`) into its run store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.errors import ConfigError
from opencharacter.executors.shards import SHARDS_DIR, ShardsIncomplete, find_shards, merge_shards


def merge_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory whose shards/ to merge.")],
) -> None:
    """Merge RUN/shards/*/store.sqlite into RUN and write the run files (safe to repeat)."""
    if not find_shards(run):
        raise ConfigError(f"{run / SHARDS_DIR} holds no shard stores; make them with `--shard i/N`")
    from opencharacter.cli.report import console

    report = merge_shards(run)
    console.print(
        f"merged shards {', '.join(report.shards)} into {run}: {report.records} new records, "
        f"{report.calls} new calls, {report.failures} failures copied, {report.sessions} sessions"
    )
    if report.missing or report.unfinished:
        raise ShardsIncomplete(report.missing, report.unfinished)
