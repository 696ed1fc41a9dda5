"""Evaluation arithmetic and parsing, checked against hand-computed values."""

from __future__ import annotations

import json
import math

import pytest

from opencharacter.errors import InputError, ParseError
from opencharacter.eval.fidelity import fidelity_summary, rank_answers
from opencharacter.eval.records import FidelityResult, Verdict
from opencharacter.eval.scores import bootstrap_delta, persona_task_scores, summarize
from opencharacter.eval.sources import load_benchmark
from opencharacter.eval.stages import parse_verdict
from opencharacter.eval.tasks import TASKS
from opencharacter.records import Completion


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("The answer fits well.\nScore: 4", 4),
        ("Reasoning... **Score:** 5", 5),
        ("First I thought Score: 2, but on reflection\nScore: 3", 3),
        ("score=1", 1),
        ('{"rationale": "Fits the persona.", "score": 4}', 4),
        ('{"rationale": "ok", "score": 2.0}', 2),
    ],
)
def test_well_formed_verdicts(text, score):
    assert parse_verdict(Completion(text=text))[0] == score


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A fine answer, I'd give it four.", "no 'Score: N'"),
        ("Score: 7", "not an integer from 1 to 5"),
        ("Score: 0", "not an integer from 1 to 5"),
        ("Score: 3.5", "not an integer from 1 to 5"),
        ('{"rationale": "great", "score": 9}', "not an integer from 1 to 5"),
        ('{"rationale": "great", "score": true}', "not an integer from 1 to 5"),
        ('{"rationale": "no score here"}', "no 'Score: N'"),
    ],
)
def test_malformed_and_out_of_range_verdicts_are_rejected(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_verdict(Completion(text=text))


def verdict(persona, task, question, judge, score):
    return Verdict(question_id=question, persona_id=persona, task=task, judge=judge, score=score,
                   excluded_reason=None if score else "unparsable")  # fmt: skip


def test_aggregation_matches_hand_computation():
    ea, tc = "Expected Action", "Toxicity Control"
    verdicts = [
        # persona A: EA q1 judged 4 and 2 (mean 3), q2 judged 5 → EA = (3 + 5) / 2 = 4; TC q3 = 2
        verdict("A", ea, "q1", "j1", 4), verdict("A", ea, "q1", "j2", 2), verdict("A", ea, "q2", "j1", 5),
        verdict("A", tc, "q3", "j1", 2),
        # persona B: EA q4 = 1; TC q5 excluded by one judge, 3 by the other → TC = 3
        verdict("B", ea, "q4", "j1", 1), verdict("B", tc, "q5", "j1", None), verdict("B", tc, "q5", "j2", 3),
    ]  # fmt: skip
    per = persona_task_scores(verdicts)
    assert per["A"] == {ea: 4.0, tc: 2.0, "PersonaScore": 3.0}
    assert per["B"] == {ea: 1.0, tc: 3.0, "PersonaScore": 2.0}
    summary = summarize(verdicts)
    assert summary["scores"][ea] == {"mean": 2.5, "std": 1.5, "personas": 2}
    assert summary["scores"]["PersonaScore"]["mean"] == 2.5
    assert summary["excluded_verdicts"] == 1 and summary["verdicts"] == 7
    assert math.isnan(summary["scores"]["Linguistic Habits"]["mean"])


def test_bootstrap_interval_brackets_the_paired_delta():
    before = {"a": 2.0, "b": 3.0, "c": 4.0, "d": 3.0}
    after = {p: v + 1.0 for p, v in before.items()}
    assert bootstrap_delta(before, after) == (1.0, 1.0, 1.0)
    noisy = {"a": 2.5, "b": 4.5, "c": 4.0, "d": 4.5}
    delta, low, high = bootstrap_delta(before, noisy)
    assert low <= delta == 0.875 <= high and low < high


def test_fidelity_ranks_against_chance_on_a_constructed_case():
    import torch

    vectors = {
        "mechanic": [1.0, 0.0, 0.0],
        "chef": [0.0, 1.0, 0.0],
        "astronomer": [0.0, 0.0, 1.0],
        "I fix engines": [0.9, 0.1, 0.0],
        "I bake bread": [0.1, 0.9, 0.2],
        "stars, engines": [0.6, 0.0, 0.5],
    }

    def embed(texts):
        return torch.nn.functional.normalize(torch.tensor([vectors[t] for t in texts]), dim=-1)

    profiles = {"m": "mechanic", "c": "chef", "a": "astronomer"}
    results = rank_answers(
        embed, profiles, [("q", "m", "I fix engines"), ("q", "c", "I bake bread"), ("q", "a", "stars, engines")]
    )
    assert [r.rank for r in results] == [1, 1, 2]
    summary = fidelity_summary(results)
    assert summary["top1"] == pytest.approx(2 / 3) and summary["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert summary["chance_top1"] == pytest.approx(1 / 3) and summary["chance_mrr"] == pytest.approx(
        (1 + 1 / 2 + 1 / 3) / 3
    )
    assert fidelity_summary([FidelityResult(question="q", persona_id="x", rank=1, candidates=2)])["top1"] == 1.0


def test_real_minilm_tells_characters_apart():
    from opencharacter.models.embedder import Embedder

    profiles = {
        "m": "Name: Joe Park\nGeneral Experience: a marine mechanic who repairs boat engines in the harbour",
        "c": "Name: Lea Roux\nGeneral Experience: a pastry chef who runs a bakery in Lyon",
        "a": "Name: Sam Ode\nGeneral Experience: an astronomer who studies distant galaxies with telescopes",
    }
    answers = [
        ("q", "m", "Most days I'm down at the docks with grease on my hands, rebuilding outboard motors."),
        ("q", "c", "I get up at four to shape croissants and pull the first baguettes from the oven."),
        ("q", "a", "I spend my nights at the observatory pointing the telescope at faint galaxies."),
    ]
    assert [r.rank for r in rank_answers(Embedder(), profiles, answers)] == [1, 1, 1]


def test_personagym_static_benchmark_is_read_unchanged(tmp_path):
    folder = tmp_path / "benchmark"
    folder.mkdir()
    persona = "A 35-year-old marine biologist from Hawaii who loves surfing"
    data = {task.benchmark_key: [f"{task.name} question {i}?" for i in range(10)] for task in TASKS}
    (folder / f"{persona}.json").write_text(json.dumps(data), encoding="utf-8")
    personas, questions = load_benchmark(folder)
    assert [p.persona for p in personas] == [persona]
    assert len(questions) == 50 and {q.task for q in questions} == {t.name for t in TASKS}
    assert all(q.source == "benchmark" for q in questions)
    (folder / "Broken persona.json").write_text('{"Toxicity": ["ok?"], "Made Up Task": []}', encoding="utf-8")
    with pytest.raises(InputError, match="unknown task keys"):
        load_benchmark(folder)


def test_fidelity_ignores_names_so_name_dropping_does_not_count():
    from opencharacter.eval.fidelity import without_names

    names = ["Alec Breen", "Lea Roux"]
    assert without_names("Alec Breen", names) == "(nothing but a name)"
    assert without_names("I'm Alec, and I fix boats.", names) == "I'm , and I fix boats."
    profile = "Name: Lea Roux\nAge: 30\nGeneral Experience: pastry chef"
    assert without_names(profile, names) == "Age: 30 General Experience: pastry chef"
