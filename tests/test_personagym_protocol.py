"""`eval --protocol personagym`: a stand-in checkout and a recording server on 127.0.0.1.

The expected request texts are written out literally (not rebuilt with the code under test): the
rubrics go in as a Python list's text, the examples parsed as the reference's `process_examples`.
"""

from __future__ import annotations

import ast
import json

import pytest

from opencharacter.eval.personagym import protocol
from tests.personagym_standin import JUDGE_SYSTEM, TASKS, make_checkout, recording_server

CAPTAIN = "A ferry captain from Oslo"
STUDENT = "A shy botanist"
EXAMPLES_REPLY = (
    'Rubric 1 Examples:\nScore 1:  Response - "Bad."\n\nScore 2:  Response - meh\nnoise line\n\n'
    'Score 5:  Response - "Great."'
)
EXAMPLES_PARSED = 'Score 1: "Bad."\n\nScore 2: "meh\n\nScore 5: "Great."'
ANSWER = "  Aye, calm seas.  "


def kind(body: dict) -> str:
    messages = body["messages"]
    if messages[0]["content"] == JUDGE_SYSTEM:
        return "judge"
    return "examples" if messages[0]["content"].startswith("MAKE EXAMPLES") else "answer"


def rubrics_of(body: dict) -> list[str]:
    """The judge prompt's rubric list, read back from its text."""
    return ast.literal_eval(body["messages"][1]["content"].split("Rubrics:\n", 1)[1].rstrip("\n"))


def persona_task(body: dict) -> tuple[str, str]:
    first = rubrics_of(body)[0].split("\n")
    return first[1].removeprefix("Persona: "), first[0].removeprefix("RUBRIC ")


def evaluate(run_cli, checkout, out, url, *extra):
    return run_cli(
        "eval", "--protocol", "personagym", "--personagym", checkout, "--out", out, "--backend", "openai",
        "--base-url", url, "--model", "model-under-test", "--judge-base-url", url, "-q", *extra,
    )  # fmt: skip


def test_light_requests_are_the_references_byte_for_byte(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    checkout = make_checkout(tmp_path / "PersonaGym", [CAPTAIN], per_task=3)

    replies = {"answer": ANSWER, "examples": EXAMPLES_REPLY, "judge": verdict([4])}

    def reply(body):
        return replies[kind(body)]

    with recording_server(reply) as (url, bodies):
        code, out, err = evaluate(run_cli, checkout, tmp_path / "e", url, "--light", "--judge", "gpt-4o-2024-08-06")
    assert code == 0, err
    # Light: the first question of each task; one answer, one example call, one verdict per task.
    assert sorted(kind(b) for b in bodies) == ["answer"] * 5 + ["examples"] * 5 + ["judge"] * 5
    question = "Toxicity q0 for A ferry capt, isn't it?"
    reference = {"frequency_penalty": 0, "presence_penalty": 0, "stop": None}
    answer = next(b for b in bodies if kind(b) == "answer" and b["messages"][1]["content"] == question)
    assert answer == {
        "model": "model-under-test",
        "messages": [
            {"role": "system", "content": "Play A ferry captain from Oslo. Stay in role."},
            {"role": "user", "content": question},
        ],
        "temperature": 0.9, "top_p": 0.9, "max_tokens": 3000, **reference,
    }  # fmt: skip
    examples = next(
        b for b in bodies if kind(b) == "examples" and "rubric=RUBRIC Toxicity" in b["messages"][0]["content"]
    )
    assert examples == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {
                "role": "user",
                "content": 'MAKE EXAMPLES\nRubrics:\n["EX persona=A ferry captain from Oslo\\nquestion=Toxicity q0 '
                "for A ferry capt, isn't it?\\nrubric=RUBRIC Toxicity\\nPersona: {persona}\\nQ: {question}\\n"
                'A: {response}\\nExamples:\\n{score_example}\\n"]',
            }
        ],
        "temperature": 0.0, "top_p": 0.0, "max_tokens": 3000, **reference,
    }  # fmt: skip
    judge = next(b for b in bodies if kind(b) == "judge" and persona_task(b)[1] == "Toxicity")
    assert judge == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": JUDGE_SYSTEM},
            {
                "role": "user",
                "content": "GRADE EACH\n(1) Evaluation:\n\nRubrics:\n['RUBRIC Toxicity\\nPersona: A ferry captain "
                "from Oslo\\nQ: Toxicity q0 for A ferry capt, isn\\'t it?\\nA:   Aye, calm seas.  \\nExamples:\\n"
                'Score 1: "Bad."\\n\\nScore 2: "meh\\n\\nScore 5: "Great."\\n\']\n',
            },
        ],
        "temperature": 0.0, "top_p": 0.0, "max_tokens": 3000, **reference,
    }  # fmt: skip
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["protocol"] == "personagym" and summary["persona_score"] == 4.0
    assert summary["judges"] == [{"model": "gpt-4o-2024-08-06", "backend": "openai", "base_url": url}]
    assert summary["checkout"]["commit"] is None and summary["light"] is True
    assert "PersonaScore (1/1): 4.0 (0.0)" in out


def test_student_route_sends_the_forks_system_prompt_and_sampling(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    checkout = make_checkout(tmp_path / "PersonaGym", [STUDENT], per_task=1)

    replies = {"answer": ANSWER, "examples": EXAMPLES_REPLY, "judge": verdict([3])}

    def reply(body):
        return replies[kind(body)]

    with recording_server(reply) as (url, bodies):
        code, _, err = evaluate(run_cli, checkout, tmp_path / "e", url, "--system-prompt", "student", "--judge", "j")
    assert code == 0, err
    answer = next(b for b in bodies if kind(b) == "answer")
    # No top_p (the route sends none), no seed, the fork's 1024 tokens and stop token.
    assert answer == {
        "model": "model-under-test",
        "messages": [
            {"role": "system", "content": "You are a stand-in character.\n\n# Who\nA shy botanist\n\nKeep to it. "
             "Be kind."},
            answer["messages"][1],
        ],
        "temperature": 0.9, "max_tokens": 1024, "stop": ["<|eot_id|>"],
    }  # fmt: skip
    judge = next(b for b in bodies if kind(b) == "judge")
    assert "\\nA: Aye, calm seas.\\n" in judge["messages"][1]["content"]  # this route's answers are stripped


# (persona, task) → the verdict's '(n) Evaluation:' segments: a score, or None for one without a final score.
LIGHT_SCRIPT = {
    (CAPTAIN, "Expected Action"): [4],
    (CAPTAIN, "Toxicity"): [None],  # unparsable: the task scores 0
    (CAPTAIN, "Linguistic Habits"): [5],
    (CAPTAIN, "Persona Consistency"): [3],
    (CAPTAIN, "Action Justification"): [2, 4],  # two segments for one answer: both count
}


def verdict(segments: list[int | None]) -> str:
    return "\n".join(
        f"({i}) Evaluation: reasons." + ("" if s is None else f" Therefore, the final score is {s}")
        for i, s in enumerate(segments, start=1)
    )


def test_unparsable_verdicts_score_zero_and_persona_score_is_hand_computed(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    checkout = make_checkout(tmp_path / "PersonaGym", [CAPTAIN, STUDENT], per_task=2)

    def reply(body):
        if kind(body) != "judge":
            return EXAMPLES_REPLY if kind(body) == "examples" else ANSWER
        return verdict(LIGHT_SCRIPT.get(persona_task(body), [5]))

    with recording_server(reply) as (url, _):
        code, _, err = evaluate(run_cli, checkout, tmp_path / "e", url, "--light", "--judge", "j")
    assert code == 0, err
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    captain = summary["per_persona"][CAPTAIN]
    assert captain == {
        "Expected Action": 4.0, "Toxicity": 0.0, "Linguistic Habits": 5.0, "Persona Consistency": 3.0,
        "Action Justification": 3.0, "PersonaScore": (4 + 0 + 5 + 3 + 3) / 5,
    }  # fmt: skip
    assert summary["per_persona"][STUDENT]["PersonaScore"] == 5.0
    assert summary["persona_score"] == pytest.approx(4.0)
    assert summary["scores"]["PersonaScore"] == {"mean": 4.0, "std": 1.0, "personas": 2}  # population std
    assert summary["scores"]["Toxicity"]["mean"] == 2.5


def test_full_mode_judges_batches_of_five_and_averages_judges(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    checkout = make_checkout(tmp_path / "PersonaGym", [CAPTAIN], per_task=7)
    script = {("j1", 5): [5, 5, 4, 4, None], ("j1", 2): [3, None], ("j2", 5): [2] * 5, ("j2", 2): []}

    def reply(body):
        if kind(body) != "judge":
            return EXAMPLES_REPLY if kind(body) == "examples" else ANSWER
        return verdict(script[(body["model"], len(rubrics_of(body)))])

    with recording_server(reply) as (url, bodies):
        judges = ("--judge", "j1", "--judge", f"model=j2,base_url={url}")
        code, _, err = evaluate(run_cli, checkout, tmp_path / "e", url, *judges, "--example-model", "ex")
    assert code == 0, err
    judged = [b for b in bodies if kind(b) == "judge"]
    assert sorted(len(rubrics_of(b)) for b in judged) == [2] * 10 + [5] * 10  # 7 answers: 5 + 2, per judge
    assert {b["model"] for b in bodies if kind(b) == "examples"} == {"ex"}
    assert sum(kind(b) == "examples" for b in bodies) == 35  # one call per question
    # j1: (5+5+4+4)/4 = 4.5 and 3/1; j2: 2 and 0 (nothing parsed) → batches 3.25, 1.5 → task 2.375.
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["per_persona"][CAPTAIN] == {**dict.fromkeys(TASKS, 2.375), "PersonaScore": 2.375}
    assert [j["model"] for j in summary["judges"]] == ["j1", "j2"] and summary["example_model"]["model"] == "ex"


def test_no_persona_score_without_a_named_judge(tmp_path, run_cli):
    checkout = make_checkout(tmp_path / "PersonaGym", [CAPTAIN], per_task=1)
    code, _, err = run_cli("eval", "--personagym", checkout, "--out", tmp_path / "e", "--backend", "fake", "-q")
    assert code != 0 and "named judge" in err and "gpt-4o-2024-08-06" in err


def test_process_examples_and_verdict_parsing_follow_the_reference():
    assert protocol.process_examples(EXAMPLES_REPLY) == EXAMPLES_PARSED
    assert protocol.process_examples("no examples at all") == ""
    assert protocol.parse_scores("(1) Evaluation: x Therefore, the final score is 5 (2) Evaluation: none") == [5, 0]
    assert protocol.parse_scores("Therefore, the final score is 5") == []  # no '(n) Evaluation:' segment
    assert protocol.modified_average([4, 0, 2]) == 3.0
    assert protocol.modified_average([0, 0]) == 0 and protocol.modified_average([]) == 0


def test_compare_labels_the_protocol_and_refuses_to_cross_protocols(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    checkout = make_checkout(tmp_path / "PersonaGym", [CAPTAIN, STUDENT], per_task=1)
    replies = {"answer": ANSWER, "examples": EXAMPLES_REPLY, "judge": verdict([4])}
    with recording_server(lambda body: replies[kind(body)]) as (url, _):
        for name in ("p1", "p2"):
            code, _, err = evaluate(run_cli, checkout, tmp_path / name, url, "--light", "--judge", "j")
            assert code == 0, err
    ours = tmp_path / "ours"
    benchmark = ("--benchmark", checkout / "questions/benchmark-v1", "--backend", "fake", "--judge-backend", "fake")
    code, _, err = run_cli("eval", *benchmark, "--out", ours, "-q")
    assert code == 0, err
    summary = json.loads((ours / "summary.json").read_text())
    # No judge named: the embedded model judges, and the report says this is no score to report.
    assert summary["protocol"] == "opencharacter" and summary["demo_judge"] is True
    report = (ours / "report.md").read_text()
    assert "Protocol: opencharacter protocol" in report and "embedded demo model" in report
    code, _, err = run_cli("eval", "compare", tmp_path / "p1", ours)
    assert code != 0 and "personagym protocol" in err and "opencharacter protocol" in err
    code, out, err = run_cli("eval", "compare", tmp_path / "p1", tmp_path / "p2")
    assert code == 0, err
    assert "PersonaGym-Light protocol" in err and json.loads(out)[-1]["task"] == "PersonaScore"


def test_checkout_reading_commit_upstream_layout_and_bad_templates(tmp_path):
    import subprocess

    from opencharacter.errors import InputError
    from opencharacter.eval.personagym.checkout import load_checkout, load_questions

    root = make_checkout(tmp_path / "PersonaGym", [STUDENT, CAPTAIN], per_task=1, with_personas_file=False)
    (root / "prompts/score_examples/examples.txt").rename(root / "prompts/score_examples/parallel_examples.txt")
    git = ("git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "stand-in"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    checkout = load_checkout(root)
    assert checkout.commit == head
    # Upstream has no examples.txt: its five-rubric template is used, with one rubric per call.
    assert checkout.examples_file == "prompts/score_examples/parallel_examples.txt"
    assert load_questions(checkout, "questions/benchmark-v1")[0] == [CAPTAIN, STUDENT]  # no personas.py: by name
    (root / "rubrics/Toxicity.txt").write_text("a {stray} slot", encoding="utf-8")
    with pytest.raises(InputError, match=r"rubrics/Toxicity.txt.*does not format"):
        protocol.judge_messages(load_checkout(root), CAPTAIN, "Toxicity", [("q", "a")], ["e"])
