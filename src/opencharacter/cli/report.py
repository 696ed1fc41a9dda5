"""What a command prints when it is done: inputs read, per-stage outcomes, tokens, where files are."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from opencharacter.export.run_files import CHARACTERS, DIALOGUES, FAILURES
from opencharacter.sources import LoadReport

if TYPE_CHECKING:
    from opencharacter.pipeline import RunSession

console = Console(stderr=True, soft_wrap=True)


def print_loads(reports: list[LoadReport]) -> None:
    for report in reports:
        console.print(f"[dim]read[/] {report.summary()}")
        for error in report.invalid[:10]:
            console.print(f"  [yellow]skipped[/] {error}")
        if len(report.invalid) > 10:
            console.print(f"  [yellow]… and {len(report.invalid) - 10} more[/]")


def print_summary(session: RunSession) -> None:
    table = Table(title=f"opencharacter {session.command}", title_justify="left")
    for column in ("stage", "items", "done", "made now", "failed", "skipped (failed before)"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for result in session.results:
        table.add_row(
            result.stage,
            str(result.total),
            str(result.done),
            str(result.made),
            str(result.failed),
            str(result.skipped_failed),
        )
    console.print(table)
    stats = session.engine.stats
    wall = time.monotonic() - session.started
    console.print(
        f"calls: {stats.new_calls} new, {stats.cached_calls} from the store, {stats.retries} retried · "
        f"tokens: {stats.prompt_tokens} in, {stats.completion_tokens} out "
        f"({stats.tokens_per_second():.1f} tok/s) · wall {wall:.1f}s"
    )
    run = session.run_dir
    console.print(f"run directory: {run}  ({CHARACTERS}, {DIALOGUES}, {FAILURES}, README.md, store.sqlite)")
    if any(r.failed or r.skipped_failed for r in session.results):
        console.print("failed items are in failures.jsonl; rerun with --retry-failed to try them again")
