"""The recipe's PersonaGym benchmark: base, students and anchors scored by the protocol, one PScore table."""

from __future__ import annotations

import pytest

from opencharacter.config import RecipeConfig, build
from opencharacter.errors import ConfigError
from opencharacter.recipe.benchmark import benchmark_markdown, check_benchmark, score_benchmark
from opencharacter.sources.bundled import sample_path
from tests.personagym_standin import JUDGE_SYSTEM, make_checkout, recording_server

PERSONAS = ["A ferry captain from Oslo", "A shy botanist"]


def recipe(tmp_path, url: str | None, **eval_section) -> RecipeConfig:
    server = {"backend": "openai", "base_url": url or "http://127.0.0.1:9/v1"}
    data = {
        "out": str(tmp_path / "recipe"),
        "personas": {"path": str(sample_path("personas.jsonl"))},
        "instructions": [{"path": str(sample_path("instructions.jsonl"))}],
        "student_backend": server,
        "eval": {
            "light": True,
            "benchmark": "personagym",
            "judges": [{**server, "model": "judge-x"}],
            "personagym": {
                "checkout": str(tmp_path / "PersonaGym"),
                "anchors": [{**server, "model": "gpt-4o-2024-08-06"}],
            },
            **eval_section,
        },
    }
    return build(RecipeConfig, data, "recipe.yaml")


def test_base_students_and_anchors_get_one_pscore_table(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    make_checkout(tmp_path / "PersonaGym", PERSONAS, per_task=2)
    scores = {"base-model": 3, "tuned-model": 5, "gpt-4o-2024-08-06": 4}

    def reply(body):
        messages = body["messages"]
        if messages[0]["content"] == JUDGE_SYSTEM:  # the judge scores whoever answered, named in the answer
            answerer = next(name for name in scores if f"answered by {name}" in messages[1]["content"])
            return f"(1) Evaluation: Therefore, the final score is {scores[answerer]}"
        if messages[0]["content"].startswith("MAKE EXAMPLES"):
            return 'Score 1:  Response - "x"'
        return f"answered by {body['model']}"

    with recording_server(reply) as (url, bodies):
        config = recipe(tmp_path, url)
        check_benchmark(config)
        summaries = score_benchmark(config, {"base": "base-model", "generate": "tuned-model"}, tmp_path / "out")
    assert summaries is not None and list(summaries) == ["base", "generate", "gpt-4o-2024-08-06"]
    assert [s["persona_score"] for s in summaries.values()] == [3.0, 5.0, 4.0]
    assert (tmp_path / "out" / "benchmark" / "generate" / "summary.json").is_file()
    answers = {b["model"]: b for b in bodies if b["messages"][0]["content"] != JUDGE_SYSTEM and len(b["messages"]) == 2}
    # Students answer with the fork's OpenCharacter system prompt and route; the anchor with the persona prompt.
    assert answers["tuned-model"]["messages"][0]["content"].startswith("You are a stand-in character.")
    assert answers["tuned-model"]["max_tokens"] == 1024 and "top_p" not in answers["tuned-model"]
    assert answers["gpt-4o-2024-08-06"]["messages"][0]["content"].startswith("Play ")
    assert answers["gpt-4o-2024-08-06"]["max_tokens"] == 3000
    table = benchmark_markdown(summaries)
    assert "## PersonaGym benchmark (PScore-L)" in table and "judges: judge-x" in table
    assert "| generate | student | 5.00 ± 0.00 |" in table and "| gpt-4o-2024-08-06 | bare | 4.00 ± 0.00 |" in table


def test_the_benchmark_is_checked_before_anything_runs(tmp_path):
    make_checkout(tmp_path / "PersonaGym", PERSONAS, per_task=1)
    with pytest.raises(ConfigError, match="named judge"):
        check_benchmark(recipe(tmp_path, None, judges=[]))  # the recipe's default judge is the embedded model
    config = recipe(tmp_path, None)
    config.eval.personagym.checkout = None
    with pytest.raises(ConfigError, match=r"eval\.personagym\.checkout"):
        check_benchmark(config)
    assert score_benchmark(recipe(tmp_path, None, benchmark=None), {"base": "m"}, tmp_path) is None
    assert benchmark_markdown(None) == ""
