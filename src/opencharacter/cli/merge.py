"""`opencharacter merge`: fold the shard stores of a run (made with `--shard i/N`) into its run store."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from opencharacter.errors import ConfigError
from opencharacter.executors.shards import SHARDS_DIR, ShardsIncomplete, ShardSpec, find_shards
from opencharacter.store.lock import RunLock

Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Run only shard i of N (e.g. 0/4) into RUN/shards/i-of-N/; then `opencharacter merge --run RUN`.",
        rich_help_panel="Executor",
    ),
]


def sharded(runner: Callable[..., Any], shard: str | None) -> Callable[..., Any]:
    """`run_profiles` / `run_synthesis`, or their one-shard variant (`opencharacter.pipeline.shards`) with `--shard`."""
    if shard is None:
        return runner
    from opencharacter.pipeline import shards as sharding

    return functools.partial(getattr(sharding, f"{runner.__name__}_shard"), shard=ShardSpec.parse(shard))


def merge_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory whose shards/ to merge.")],
) -> None:
    """Merge RUN/shards/*/store.sqlite into RUN and write the run files (safe to repeat)."""
    if not find_shards(run):
        raise ConfigError(f"{run / SHARDS_DIR} holds no shard stores; make them with `--shard i/N`")
    from opencharacter.cli.report import console
    from opencharacter.pipeline.shards import merge_shards

    with RunLock(run, "merge"):  # not while a command (a Ray run, whose coordinator merges too) writes it
        report = merge_shards(run)
    console.print(
        f"merged shards {', '.join(report.shards)} into {run}: {report.records} new records, "
        f"{report.calls} new calls, {report.failures} failures copied, {report.sessions} sessions"
    )
    if report.missing or report.unfinished:
        raise ShardsIncomplete(report.missing, report.unfinished)
