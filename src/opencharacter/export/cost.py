"""The dataset card's cost section: the run's tokens per prompt and model, priced (`engine/costs.py`)."""

from __future__ import annotations

from opencharacter.engine.costs import run_cost
from opencharacter.export.markdown import render
from opencharacter.store import RunStore


def card_lines(store: RunStore) -> list[str]:
    """The section as Markdown lines, or none when the run has no price list."""
    table = run_cost(store)
    if not table.priced:
        return []
    rows = [
        (f"{r.prompt_id} · {r.model}", r.calls, r.prompt_tokens, r.completion_tokens,
         "no price" if r.cost is None else f"{r.cost:.4f}")
        for r in table.rows
    ]  # fmt: skip
    text = render("cost.md.j2", rows=rows, total=table.total, unpriced=table.unpriced)
    return text.split("\n")[:-1]
