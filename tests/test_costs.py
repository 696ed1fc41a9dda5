"""Cost accounting: the price list in the config, the run's cost table, the card, and dry-run estimates."""

from __future__ import annotations

import pytest

from opencharacter.config import ModelPrice, PipelineConfig, build
from opencharacter.engine.costs import PlannedCall, cost_table, estimate, record_prices, run_cost
from opencharacter.errors import ConfigError
from opencharacter.export.run_files import write_run_files
from opencharacter.prompts import load_prompt
from opencharacter.records import Completion, Persona, Sampling
from opencharacter.stages.profiles import build_request
from opencharacter.store import RunStore

PRICES = {"teacher": ModelPrice(input=0.5, output=2.0)}


def test_prices_are_validated_in_the_pipeline_config():
    config = build(
        PipelineConfig, {"personas": {"path": "p.jsonl"}, "prices": {"teacher": {"input": 0.5, "output": 2}}}, "t"
    )
    assert config.prices["teacher"] == ModelPrice(input=0.5, output=2.0)
    assert build(PipelineConfig, {"personas": {"path": "p.jsonl"}}, "t").prices == {}
    for bad in ({"teacher": {"input": -1, "output": 1}}, {"teacher": {"input": 1}}, {"t": {"in": 1, "output": 1}}):
        with pytest.raises(ConfigError):
            build(PipelineConfig, {"personas": {"path": "p.jsonl"}, "prices": bad}, "t")


def test_cost_table_prices_each_prompt_and_model_and_names_the_unpriced():
    table = cost_table(
        [("profile@v1", "teacher", 10, 2_000_000, 500_000), ("generate@v1", "other", 3, 100, 100)], PRICES
    )
    assert [row.stage for row in table.rows] == ["profile", "generate"]
    assert table.rows[0].cost == pytest.approx(2 * 0.5 + 0.5 * 2.0)
    assert table.rows[1].cost is None
    assert table.total == pytest.approx(2.0) and table.unpriced == ["other"] and table.priced


def test_the_run_cost_comes_from_the_store_and_goes_on_the_dataset_card(tmp_path):
    store = RunStore(tmp_path / "run")
    store.put_call("a", "profile@v1", "teacher", Completion(text="x", prompt_tokens=1_000_000, completion_tokens=0))
    store.put_call("b", "profile@v1", "teacher", Completion(text="y", prompt_tokens=0, completion_tokens=250_000))
    card = write_run_files(store)["card"]
    assert "## Cost" not in card.read_text(encoding="utf-8")  # no prices, no invented money
    assert run_cost(store).priced is False

    record_prices(store, PRICES)
    assert run_cost(store).total == pytest.approx(0.5 + 0.5)
    text = write_run_files(store)["card"].read_text(encoding="utf-8")
    assert "## Cost" in text and "| profile@v1 · teacher | 2 | 1000000 | 250000 | 1.0000 |" in text
    store.close()


def test_an_estimate_counts_items_calls_tokens_and_money():
    template = load_prompt("profile")
    requests = [build_request(Persona(persona=f"persona {i}"), template, Sampling(max_tokens=300)) for i in range(4)]
    planned = [PlannedCall.of(template.id, r) for r in requests]
    chars = sum(sum(len(m.content) for m in r.messages) for r in requests)

    upper = estimate(planned, items=4, model="teacher", prices=PRICES)
    assert (upper.items, upper.calls, upper.prompt_tokens, upper.completion_tokens) == (4, 4, round(chars / 4), 1200)
    assert upper.rows[0].completion_basis == "max_tokens"
    assert upper.cost == pytest.approx((round(chars / 4) * 0.5 + 1200 * 2.0) / 1e6)

    # Once calls of this prompt and model are in the store, their average replaces the cap.
    observed = [(template.id, "teacher", 10, 9999, 1000), (template.id, "someone else", 10, 0, 99_999)]
    seen = estimate(planned, items=4, model="teacher", prices=PRICES, observed=observed)
    assert seen.completion_tokens == 400 and seen.rows[0].completion_basis == "observed"
    assert estimate(planned, items=4, model="unpriced", prices=PRICES).cost is None
