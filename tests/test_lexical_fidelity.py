"""Lexical fidelity beside the embedding one, and the recipe table that judges issue 11's target."""

from __future__ import annotations

import json

import pytest

from opencharacter.eval.fidelity import copy_summary, fidelity_summary, rank_answers, reciprocal_ranks
from opencharacter.eval.lexical import LexicalScorer
from opencharacter.eval.records import FidelityResult
from opencharacter.recipe.table import render_markdown, results_table, target_verdict

PROFILES = {
    "m": "Name: Joe Park\nGeneral Experience: a marine mechanic who repairs boat engines in the harbour",
    "c": "Name: Lea Roux\nGeneral Experience: a pastry chef who runs a bakery in Lyon, famous for croissants",
    "a": "Name: Sam Ode\nGeneral Experience: an astronomer who studies distant galaxies with telescopes",
}


def test_lexical_ranking_finds_the_profile_whose_words_the_answer_uses():
    answers = [
        ("q", "m", "Most mornings I'm in the harbour, elbow-deep in a boat."),
        ("q", "c", "The croissants are out by six, and the bakery smells of butter."),
        ("q", "a", "Last night the telescopes showed two galaxies colliding."),
        ("q", "m", "Ask the astronomer about galaxies; I only know engines."),  # mostly another's words
    ]
    assert [r.rank for r in rank_answers(LexicalScorer(), PROFILES, answers)] == [1, 1, 1, 2]


def test_names_do_not_count_and_answers_without_profile_words_sit_at_chance():
    # Another character's full name is not evidence for that character: names are removed first.
    named = rank_answers(LexicalScorer(), PROFILES, [("q", "c", "Joe Park, Joe Park, Joe Park bakery")])
    assert named[0].rank == 1
    # Answers sharing no word with any profile tie at 0 everywhere: a fixed pseudo-random order puts
    # them at chance (counted in their favour, all would rank first: a perfect score for nothing).
    empty = [(f"question {i}", pid, "I would rather not say.") for i in range(60) for pid in PROFILES]
    ranks = [r.rank for r in rank_answers(LexicalScorer(), PROFILES, empty)]
    assert set(ranks) == {1, 2, 3} and 1.7 < sum(ranks) / len(ranks) < 2.3
    assert ranks == [r.rank for r in rank_answers(LexicalScorer(), PROFILES, empty)]  # deterministic


def test_summaries_and_per_character_ranks_of_both_signals(tmp_path):
    results = [
        FidelityResult(question="q1", persona_id="m", rank=1, candidates=3, lexical_rank=2),
        FidelityResult(question="q2", persona_id="m", rank=3, candidates=3, lexical_rank=1),
        FidelityResult(question="q1", persona_id="c", rank=1, candidates=3, lexical_rank=3),
    ]
    embedding, lexical = fidelity_summary(results), fidelity_summary(results, "lexical")
    assert embedding["mrr"] == pytest.approx((1 + 1 / 3 + 1) / 3) and embedding["top1"] == pytest.approx(2 / 3)
    assert lexical["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3) and lexical["top1"] == pytest.approx(1 / 3)
    assert lexical["chance_mrr"] == embedding["chance_mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    (tmp_path / "fidelity.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in results))
    assert reciprocal_ranks(tmp_path, "lexical") == pytest.approx({"m": 0.75, "c": 1 / 3})
    assert reciprocal_ranks(tmp_path) == pytest.approx({"m": 2 / 3, "c": 1.0})
    # An evaluation made before the lexical signal: no lexical numbers, rather than wrong ones.
    old = [r.model_copy(update={"lexical_rank": None}) for r in results]
    assert fidelity_summary(old, "lexical") == {"answers": 0, "signal": "lexical"}


def _evaluation(root, label, rr_embedding, rr_lexical, chance=0.5, masked=None, copied=0.0):
    """An evaluation directory as the runner writes it: ranks per answer, and their summary.
    `masked` are the copy-masked (embedding, lexical) ranks: the plain ones when nothing was copied."""
    folder = root / label
    folder.mkdir(parents=True)
    rows = []
    masked = masked or (rr_embedding, rr_lexical)
    for persona, (emb, lex, memb, mlex) in enumerate(zip(rr_embedding, rr_lexical, *masked, strict=True)):
        for question in range(2):
            rows.append(FidelityResult(question=f"q{question}", persona_id=f"p{persona}", rank=emb[question],
                                       candidates=3, lexical_rank=lex[question], masked_rank=memb[question],
                                       masked_lexical_rank=mlex[question], copy_rate=copied,
                                       opens_with_profile=copied > 0.5))  # fmt: skip
    (folder / "fidelity.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    scores = {"PersonaScore": 3.0, "Expected Action": 3.0, "Toxicity Control": 3.0, "Linguistic Habits": 3.0,
              "Persona Consistency": 3.0, "Action Justification": 3.0}  # fmt: skip
    summary = {
        "scores": {name: {"mean": value, "std": 0.0, "personas": 8} for name, value in scores.items()},
        "per_persona": {f"p{i}": dict(scores) for i in range(len(rr_embedding))},
        "excluded_verdicts": 0,
        "fidelity": fidelity_summary(rows),
        "fidelity_lexical": fidelity_summary(rows, "lexical"),
        "fidelity_masked": fidelity_summary(rows, "embedding_masked"),
        "fidelity_lexical_masked": fidelity_summary(rows, "lexical_masked"),
        "profile_copy": copy_summary(rows),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def test_recipe_table_states_the_target_met_or_not_with_the_numbers(tmp_path):
    # 8 held-out characters, 2 answers each, 3 candidates (chance MRR 11/18 = 0.611).
    base = _evaluation(tmp_path, "base", [[1, 2]] * 6 + [[2, 3]] * 2, [[1, 3]] * 6 + [[2, 2]] * 2)
    strong = _evaluation(tmp_path, "generate", [[1, 1]] * 7 + [[1, 2]], [[1, 1]] * 6 + [[1, 2]] * 2)
    # Better on the embedding signal only (what selection optimises), no better lexically.
    gamed = _evaluation(tmp_path, "dpo", [[1, 1]] * 8, [[1, 3]] * 6 + [[2, 2]] * 2)
    evals = {"base": base, "generate": strong, "dpo": gamed}
    table = results_table(evals, tmp_path / "base")
    assert [row["model"] for row in table] == ["base", "generate", "dpo"]
    generate = table[1]
    assert generate["lexical MRR delta"][1] > 0 and generate["fidelity MRR delta"][1] > 0
    assert table[0]["fidelity excess"] == pytest.approx(2 / 3 - 11 / 18)  # MRR 0.667, chance 0.611
    assert generate["fidelity excess ratio"] == pytest.approx(generate["fidelity excess"] / table[0]["fidelity excess"])
    assert table[2]["lexical MRR delta"][0] == 0 and table[2]["lexical excess ratio"] == pytest.approx(1.0)
    verdict = target_verdict(table)
    assert verdict == {"met": True, "student": "generate", "checks": dict.fromkeys(verdict["checks"], True)}
    results = {
        "table": table,
        "usage": {"calls": 1, "prompt_tokens": 2, "completion_tokens": 3, "dialogues": 4, "characters": 4},
        "split": {"train_characters": 5, "held_out_characters": 8},
        "filters": {"dialogues_in": 4, "dialogues_out": 4, "removed": {}},
        "training": {},
        "timings_seconds": {"total": 1.0},
    }
    markdown = render_markdown(results)
    assert "**MET** — best tuned student `generate`" in markdown
    assert "| dpo |" in markdown and "PersonaScore" in markdown and "optimises the embedding" in markdown
    assert "- characters: 5 for training (4 with a profile), 8 held out" in markdown  # one profile failed
    # Without the strong student, the best one is better on the embedding signal only: not met, and why.
    del evals["generate"]
    markdown = render_markdown({**results, "table": results_table(evals, tmp_path / "base")})
    line = next(x for x in markdown.splitlines() if x.startswith("Effect on held-out characters"))
    assert "**NOT MET** — best tuned student `dpo`" in line
    assert "lexical MRR delta +0.00 [+0.00, +0.00] (interval above 0: no)" in line
    assert "embedding MRR delta" in line and "(interval above 0: yes)" in line


def test_rerunning_an_old_evaluation_adds_lexical_fidelity_without_any_model_call(tmp_path, monkeypatch):
    from opencharacter.backends.fake import FakeBackend
    from opencharacter.config import BackendConfig, EvalConfig
    from opencharacter.eval.records import EvalPersona
    from opencharacter.eval.runner import evaluate

    calls = []
    complete = FakeBackend.complete

    async def counted(self, request):
        calls.append(request)
        return await complete(self, request)

    monkeypatch.setattr(FakeBackend, "complete", counted)
    personas = [EvalPersona(persona_id=k, persona=f"persona {k}", character=v) for k, v in PROFILES.items()]
    fake = BackendConfig(backend="fake", model="m")
    config = EvalConfig(light=True, fidelity_questions=2, worst=0)
    out = tmp_path / "eval"
    first = evaluate(out, personas, None, fake, [fake], config, show_progress=False).summary
    assert calls and first["fidelity_lexical"]["answers"] == first["fidelity"]["answers"] == 6
    rows = [json.loads(line) for line in (out / "fidelity.jsonl").read_text().splitlines()]
    assert all(isinstance(row["lexical_rank"], int) for row in rows)
    assert first["fidelity_masked"]["answers"] == first["profile_copy"]["answers"] == 6
    # Make it look like an evaluation from before the lexical signal and the copy measures (the
    # fields missing altogether, as old files have them), then rerun it.
    added = ("lexical_rank", "masked_rank", "masked_lexical_rank", "copy_rate", "opens_with_profile")
    old = [{k: v for k, v in r.items() if k not in added} for r in rows]
    (out / "fidelity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    calls.clear()
    again = evaluate(out, personas, None, fake, [fake], config, show_progress=False).summary
    assert calls == []
    assert again["fidelity_lexical"] == first["fidelity_lexical"] and again["fidelity"] == first["fidelity"]
    for key in ("fidelity_masked", "fidelity_lexical_masked", "profile_copy"):
        assert again[key] == first[key], key
    report = (out / "report.md").read_text()
    assert "lexical (BM25)" in report and "optimises the embedding fidelity" in report


def test_a_student_that_recites_its_profile_does_not_meet_the_target(tmp_path):
    # Better than the base on both plain fidelities, by reciting: copy-masked, it is no better.
    base = _evaluation(tmp_path, "base", [[1, 2]] * 6 + [[2, 3]] * 2, [[1, 3]] * 6 + [[2, 2]] * 2)
    plain_base = ([[1, 2]] * 6 + [[2, 3]] * 2, [[1, 3]] * 6 + [[2, 2]] * 2)
    reciter = _evaluation(tmp_path, "rewrite", [[1, 1]] * 8, [[1, 1]] * 8, masked=plain_base, copied=0.8)
    table = results_table({"base": base, "rewrite": reciter}, tmp_path / "base")
    row = table[1]
    assert row["fidelity MRR delta"][1] > 0 and row["lexical MRR delta"][1] > 0
    assert (
        row["masked MRR delta"][0] == 0 and row["copy rate"] == pytest.approx(0.8) and row["opens with profile"] == 1.0
    )
    verdict = target_verdict(table)
    assert not verdict["met"] and verdict["checks"]["fidelity delta > 0"] and verdict["checks"]["lexical excess"]
    assert not verdict["checks"]["masked delta > 0"] and not verdict["checks"]["masked lexical excess"]
    markdown = render_markdown({
        "table": table,
        "usage": {"calls": 1, "prompt_tokens": 2, "completion_tokens": 3, "dialogues": 4},
        "split": {"train_characters": 5, "held_out_characters": 8},
        "filters": {"dialogues_in": 4, "dialogues_out": 4, "removed": {}},
        "training": {},
        "timings_seconds": {"total": 1.0},
    })  # fmt: skip
    assert "### Copy-masked fidelity and profile copying" in markdown
    assert "| rewrite | 0.667 (+0.00 [+0.00, +0.00]) |" in markdown and "| 100% |" in markdown
    line = next(x for x in markdown.splitlines() if x.startswith("Effect on held-out characters"))
    assert "**NOT MET**" in line and "copy-masked embedding MRR delta +0.00 [+0.00, +0.00]" in line
