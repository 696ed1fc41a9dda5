"""What a command prints: inputs read, per-stage outcomes, tokens, failure reasons, where files are."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opencharacter.pipeline.session import Reporter
from opencharacter.sources import LoadReport
from opencharacter.store.layout import CARD, CHARACTERS, DIALOGUES, FAILURES, STORE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opencharacter.config import ModelPrice
    from opencharacter.filters import FilterReport
    from opencharacter.pipeline.plan import StagePlan
    from opencharacter.pipeline.session import RunSession

console = Console(stderr=True, soft_wrap=True)
TOP_REASONS = 3


def print_loads(reports: list[LoadReport]) -> None:
    for report in reports:
        console.print(f"[dim]read[/] {escape(report.summary())}")
        for error in report.invalid[:10]:
            console.print(f"  [yellow]skipped[/] {escape(str(error))}")
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
    for result in session.results:
        for note in result.notes:
            console.print(f"[yellow]{result.stage}[/]: {escape(note)}")
    stats = session.stats
    wall = time.monotonic() - session.started
    console.print(
        f"calls: {stats.new_calls} new, {stats.cached_calls} from the store, {stats.retries} retried · "
        f"tokens: {stats.prompt_tokens} in, {stats.completion_tokens} out "
        f"({stats.tokens_per_second():.1f} tok/s) · wall {wall:.1f}s"
    )
    cost = session.command_cost()
    if cost is not None:
        model = escape(session.backend.model_id)
        console.print(f"cost of this command: US$ {cost:.4f} ({model}; the whole run's is in its {CARD})")
    endpoints = session.backend.endpoint_stats()
    if len(endpoints) > 1 or any(e.failures or e.rate_limited or e.hedges for e in endpoints):
        for endpoint in endpoints:
            console.print(f"  {escape(endpoint.line())}")
    files = f"{CHARACTERS}, {DIALOGUES}, {FAILURES}, {CARD}, {STORE}"
    console.print(f"run directory: {escape(str(session.run_dir))}  ({files})")
    reasons = session.failure_reasons()
    if reasons:
        console.print("commonest failure reasons:")
        for reason, count in reasons.most_common(TOP_REASONS):
            console.print(f"  {count:>6} × {escape(reason)}")
        console.print("failed items are in failures.jsonl; rerun with --retry-failed to try them again")


def print_filter_report(target: Path, report: FilterReport) -> None:
    console.print(
        f"filtered: {report.dialogues_out} of {report.dialogues_in} dialogues and "
        f"{report.characters_out} of {report.characters_in} characters kept → {escape(str(target))}"
    )
    for reason, count in sorted(report.removed.items(), key=lambda item: -item[1]):
        console.print(f"  removed {count:>5}  {escape(reason)}")
    for note in report.notes:
        console.print(f"  note: {escape(note)}")


def print_plan(plans: list[StagePlan], prices: Mapping[str, ModelPrice] | None = None) -> None:
    """The `--dry-run` table: per stage, items by state and the calls still to make.

    With `prices:` in the config, an upper bound of the cost too: every call priced at its prompt
    length and its full `max_tokens` (answers usually stop earlier; the run's README prices what was spent).
    """
    table = Table(title="dry run: nothing was called or written", title_justify="left")
    columns = (
        "stage",
        "items",
        "done",
        "failed before",
        "to make",
        "calls",
        "≈ prompt tokens",
        "max completion tokens",
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "stage" else "left")
    for plan in plans:
        table.add_row(
            plan.label,
            str(plan.items),
            str(plan.done),
            str(plan.failed_before),
            str(plan.to_make),
            str(plan.total_calls),
            str(plan.prompt_tokens),
            str(plan.completion_cap),
        )
    console.print(table)
    console.print(
        "calls count first attempts (retries after invalid output come on top); prompt tokens ≈ characters / 4; "
        "failed-before items are skipped unless --retry-failed"
    )
    if prices:
        _print_price_bounds(plans, prices)


def _print_price_bounds(plans: list[StagePlan], prices: Mapping[str, ModelPrice]) -> None:
    """The dry run priced by the one estimator (`engine.costs.estimate`): prompt tokens from the
    rendered prompts, completion tokens from the run's own average per prompt once it has calls,
    else every call at its full max_tokens (an upper bound)."""
    from opencharacter.engine.costs import PlannedCalls, estimate

    if not plans:
        return
    planned = PlannedCalls()
    for plan in plans:
        planned.update(plan.planned)
    model = plans[0].model
    result = estimate(
        planned, items=sum(plan.to_make for plan in plans), model=model, prices=prices, observed=plans[0].observed
    )
    if result.cost is None:
        console.print(f"no price for {escape(model)} in `prices:`: the estimate has tokens only")
        return
    upper = all(row.completion_basis == "max_tokens" for row in result.rows)
    basis = "every call at its full max_tokens" if upper else "completions as long as this run's so far"
    console.print(f"{'at most' if upper else 'about'} US$ {result.cost:.2f} at {escape(model)}'s price ({basis})")


class ConsoleReporter(Reporter):
    """The CLI's reporter: everything on stderr, so stdout stays for data."""

    def loads(self, reports: list[LoadReport]) -> None:
        print_loads(reports)

    def summary(self, session: RunSession) -> None:
        print_summary(session)

    def filtered(self, target: Path, report: FilterReport) -> None:
        print_filter_report(target, report)

    def note(self, text: str) -> None:
        console.print(escape(text))
