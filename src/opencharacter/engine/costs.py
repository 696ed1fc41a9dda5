"""Money: what a run has cost, and what a run will cost before it starts.

Tokens per prompt and model are in the store already (every call records its usage); a price list
(`prices:` in the pipeline YAML, US$ per million tokens) turns them into dollars. The same table
serves the end-of-command summary, the dataset card (`export/cost.py` renders its section) and the
`--dry-run` estimate.

A model without a price is reported with its tokens and no cost, never as free: the total then
says which models it leaves out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from opencharacter.config import ModelPrice
from opencharacter.records import ChatRequest
from opencharacter.store import RunStore

PRICES_META = "prices"
# A rough English average for the prompt side of an estimate made before any call returned usage.
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class CostRow:
    prompt_id: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: no price for this model

    @property
    def stage(self) -> str:
        """The prompt's name (`profile`, `generate`, `rewrite`, …): what the stage is called."""
        return self.prompt_id.split("@", 1)[0]


@dataclass(frozen=True)
class CostTable:
    rows: list[CostRow]

    @property
    def total(self) -> float:
        return sum(row.cost for row in self.rows if row.cost is not None)

    @property
    def unpriced(self) -> list[str]:
        return sorted({row.model for row in self.rows if row.cost is None})

    @property
    def priced(self) -> bool:
        return any(row.cost is not None for row in self.rows)


def price_of(prompt_tokens: float, completion_tokens: float, price: ModelPrice | None) -> float | None:
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000


def cost_table(usage: Iterable[tuple[str, str, int, int, int]], prices: Mapping[str, ModelPrice]) -> CostTable:
    """Rows of (prompt id, model, calls, prompt tokens, completion tokens) — `RunStore.usage_rows()` — priced."""
    return CostTable(
        [
            CostRow(prompt_id, model, calls, prompt, completion, price_of(prompt, completion, prices.get(model)))
            for prompt_id, model, calls, prompt, completion in usage
        ]
    )


def run_cost(store: RunStore, prices: Mapping[str, ModelPrice] | None = None) -> CostTable:
    """The run's cost so far; without `prices`, the price list the run recorded (`record_prices`)."""
    return cost_table(store.usage_rows(), prices if prices is not None else recorded_prices(store))


def record_prices(store: RunStore, prices: Mapping[str, ModelPrice]) -> None:
    """Keep the price list with the run, so the dataset card (rewritten by every command) can price it."""
    if prices:
        store.set_meta(PRICES_META, {model: price.model_dump() for model, price in prices.items()})


class Pricing:
    """The price list of one command: its tokens priced in the summary, and kept with the run so the
    dataset card (rewritten by every later command) prices the whole run."""

    def __init__(self) -> None:
        self.prices: dict[str, ModelPrice] = {}

    def use(self, store: RunStore, prices: Mapping[str, ModelPrice] | None) -> None:
        self.prices = dict(prices or {})
        record_prices(store, self.prices)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """US$ for these tokens of `model`, or None when it has no price."""
        return price_of(prompt_tokens, completion_tokens, self.prices.get(model))


def recorded_prices(store: RunStore) -> dict[str, ModelPrice]:
    return {model: ModelPrice(**price) for model, price in (store.get_meta(PRICES_META) or {}).items()}


# -- estimates before a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    """One call a stage still has to make: its prompt, how long its rendered prompt is, its token cap."""

    prompt_id: str
    prompt_chars: int
    max_tokens: int

    @classmethod
    def of(cls, prompt_id: str, request: ChatRequest) -> PlannedCall:
        return cls(prompt_id, sum(len(m.content) for m in request.messages), request.sampling.max_tokens)


class PlannedCalls:
    """Calls still to make, summed per prompt (count, rendered prompt characters, token caps): what a
    dry run counts, in memory that does not grow with the number of calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.prompt_chars: Counter[str] = Counter()
        self.max_tokens: Counter[str] = Counter()

    def add(self, call: PlannedCall) -> None:
        self.calls[call.prompt_id] += 1
        self.prompt_chars[call.prompt_id] += call.prompt_chars
        self.max_tokens[call.prompt_id] += call.max_tokens

    def update(self, other: PlannedCalls) -> None:
        self.calls.update(other.calls)
        self.prompt_chars.update(other.prompt_chars)
        self.max_tokens.update(other.max_tokens)

    def totals(self) -> dict[str, tuple[int, int, int]]:
        """prompt id → (calls, prompt characters, summed max_tokens)."""
        return {key: (self.calls[key], self.prompt_chars[key], self.max_tokens[key]) for key in self.calls}


@dataclass(frozen=True)
class EstimateRow:
    prompt_id: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    completion_basis: str  # "observed" (average of this run's calls) or "max_tokens" (an upper bound)
    cost: float | None


@dataclass
class Estimate:
    items: int
    model: str
    rows: list[EstimateRow] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rows)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.rows)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.rows)

    @property
    def cost(self) -> float | None:
        """None when the model has no price."""
        costs = [r.cost for r in self.rows]
        return None if not costs or any(c is None for c in costs) else sum(c for c in costs if c is not None)


def estimate(
    planned: Iterable[PlannedCall] | PlannedCalls,
    *,
    items: int,
    model: str,
    prices: Mapping[str, ModelPrice] | None = None,
    observed: Iterable[tuple[str, str, int, int, int]] = (),
    chars_per_token: float = CHARS_PER_TOKEN,
) -> Estimate:
    """What `planned` calls will cost on `model`: items, calls, prompt/completion tokens and US$.

    The one estimator: `--dry-run` prices its plan with it (cli/report.py).

    Prompt tokens come from the rendered prompts' length. Completion tokens come from this run's
    own calls of the same prompt and model when there are any (`RunStore.usage_rows()`: the average
    per call, a good forecast once a few hundred calls are in), else from each call's `max_tokens`
    (an upper bound: the estimate then says so in `completion_basis`).
    """
    averages = {
        prompt_id: completion / calls for prompt_id, name, calls, _, completion in observed if name == model and calls
    }
    if not isinstance(planned, PlannedCalls):
        calls, planned = planned, PlannedCalls()
        for call in calls:
            planned.add(call)
    totals = planned.totals()
    price = (prices or {}).get(model)
    result = Estimate(items=items, model=model)
    for prompt_id, (calls, chars, cap) in sorted(totals.items()):
        prompt_tokens = round(chars / chars_per_token)
        if prompt_id in averages:
            completion_tokens, basis = round(averages[prompt_id] * calls), "observed"
        else:
            completion_tokens, basis = cap, "max_tokens"
        cost = price_of(prompt_tokens, completion_tokens, price)
        result.rows.append(EstimateRow(prompt_id, calls, prompt_tokens, completion_tokens, basis, cost))
    return result
