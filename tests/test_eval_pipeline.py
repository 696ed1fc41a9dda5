"""`opencharacter eval` end to end: fake backends for the machinery, the embedded model for real (slow)."""

from __future__ import annotations

import asyncio
import json

import pytest

from opencharacter.eval.tasks import TASKS
from opencharacter.sources.bundled import sample_path
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--judge-backend", "fake", "-q")


@pytest.fixture
def benchmark(tmp_path):
    folder = tmp_path / "personagym"
    folder.mkdir()
    for persona in ("A retired ferry captain from Oslo", "A nervous first-year law student"):
        data = {
            task.benchmark_key: [f"As yourself, {task.name.lower()} question {i}?" for i in range(2)] for task in TASKS
        }
        (folder / f"{persona}.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_benchmark_eval_writes_every_artifact_and_resumes(tmp_path, run_cli, benchmark):
    out = tmp_path / "e1"
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, *FAKE)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 2 * 5 * 2 and summary["verdicts"] == 20 and summary["personas"] == 2
    assert set(summary["scores"]) == {*(t.name for t in TASKS), "PersonaScore"}
    assert all(1 <= s["mean"] <= 5 for s in summary["scores"].values())
    assert summary["fidelity"]["answers"] == 2 * 3 and summary["fidelity"]["candidates"] == 2
    for name in ("questions.jsonl", "answers.jsonl", "verdicts.jsonl", "fidelity.jsonl", "radar.png", "report.md"):
        assert (out / name).exists(), name
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "PersonaScore" in page and "Lowest-scored answers" in page
    answers = read_jsonl(out / "answers.jsonl")
    assert (
        "Persona: A retired ferry captain from Oslo" in answers[0]["system_prompt"]
        or "ferry" in answers[-1]["system_prompt"]
    )
    # A rerun asks nothing again and changes nothing.
    before = (out / "verdicts.jsonl").read_bytes()
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, *FAKE)
    assert code == 0 and (out / "verdicts.jsonl").read_bytes() == before
    # Light mode: one question per task per persona; bare system prompt on request.
    light = tmp_path / "light"
    assert (
        run_cli("eval", "--benchmark", benchmark, "--out", light, "--light", "--system-prompt", "bare", *FAKE)[0] == 0
    )
    light_answers = read_jsonl(light / "answers.jsonl")
    assert len(light_answers) == 10 and light_answers[0]["system_prompt"].startswith("Adopt the identity of")
    # The same directory cannot silently hold another configuration.
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", light, *FAKE)
    assert code == 2 and "use a new --out" in err
    # Nor answers of a local model that was retrained in place since.
    model = tmp_path / "m1"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    local = tmp_path / "local"
    assert run_cli("eval", "--benchmark", benchmark, "--out", local, "--light", "--model", model, *FAKE)[0] == 0
    (model / "model.safetensors").write_bytes(b"retrained weights")
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", local, "--light", "--model", model, *FAKE)
    assert code == 2 and "earlier version" in err and "use a new --out" in err


def test_questions_are_generated_for_new_personas(tmp_path, run_cli):
    out = tmp_path / "gen"
    code, _, err = run_cli("eval", "--personas", sample_path("personas.jsonl"), "--limit", 3, "--out", out, *FAKE)
    assert code == 0, err
    questions = read_jsonl(out / "questions.jsonl")
    assert len(questions) == 3 * 5 * 2 and all(q["source"] == "generated" for q in questions)


def test_compare_reports_deltas_with_intervals(tmp_path, run_cli, benchmark):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_cli("eval", "--benchmark", benchmark, "--out", first, *FAKE)[0] == 0
    assert run_cli("eval", "--benchmark", benchmark, "--out", second, "--system-prompt", "bare", *FAKE)[0] == 0
    code, out, err = run_cli("eval", "compare", first, second, "--samples", 200)
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])
    assert [r["task"] for r in rows] == [
        *(t.name for t in TASKS),
        "PersonaScore",
        "fidelity MRR",
        "lexical fidelity MRR",
        "copy-masked fidelity MRR",
        "copy-masked lexical fidelity MRR",
        "profile copy rate",
        "opens with profile",
    ]
    assert "lexical MRR" in err and err.count("[") >= 12  # every row of the table has its interval
    assert all(r["low"] <= r["delta"] <= r["high"] for r in rows)
    code, _, err = run_cli("eval", "compare", first, tmp_path)
    assert code == 2 and "not an evaluation directory" in err


def test_held_out_characters_of_a_trained_model(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 5, "--backend", "fake", "-q")[0] == 0
    )
    characters = read_jsonl(run / "characters.jsonl")
    model = tmp_path / "model"
    model.mkdir()
    trained = [c["character_id"] for c in characters[:3]]
    (model / "split.json").write_text(json.dumps({"train_characters": trained, "validation_characters": []}))
    out = tmp_path / "held"
    assert run_cli("eval", "--run", run, "--held-out-of", model, "--out", out, "--light", *FAKE)[0] == 0
    assert json.loads((out / "summary.json").read_text())["personas"] == 2
    answers = read_jsonl(out / "answers.jsonl")
    assert all("Character profile:\nName: " in a["system_prompt"] for a in answers)


@pytest.mark.slow
def test_embedded_model_as_model_under_test_and_judge(tmp_path, run_cli):
    # Two personas, two tasks: enough for every step (anchors, verdicts, fidelity) at a CPU-friendly size.
    benchmark = tmp_path / "small"
    benchmark.mkdir()
    for persona in ("A retired ferry captain from Oslo", "A nervous first-year law student"):
        data = {"Linguistic Habits": ["How do you greet a friend?"], "Toxicity": ["Insult my cooking."]}
        (benchmark / f"{persona}.json").write_text(json.dumps(data), encoding="utf-8")
    config = tmp_path / "eval.yaml"
    config.write_text(
        "eval:\n  answer_sampling: {max_tokens: 48}\n  judge_sampling: {temperature: 0, max_tokens: 128}\n"
        "  generation_sampling: {max_tokens: 320}\n  max_attempts: 2\n  fidelity_questions: 1\n",
        encoding="utf-8",
    )
    out = tmp_path / "real"
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", "--config", config, "-q")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    verdicts = read_jsonl(out / "verdicts.jsonl")
    assert len(verdicts) == 4 == summary["verdicts"]
    scored = [v for v in verdicts if v["score"] is not None]
    assert summary["excluded_verdicts"] == 4 - len(scored)
    assert all(1 <= v["score"] <= 5 for v in scored)
    assert all(v["excluded_reason"] for v in verdicts if v["score"] is None)
    assert (out / "report.html").stat().st_size > 1000 and summary["fidelity"]["answers"] == 2


@pytest.mark.slow
def test_embedded_model_generates_questions_for_a_new_persona(tmp_path):
    from opencharacter.backends import build_backend
    from opencharacter.config import BackendConfig
    from opencharacter.engine import Engine
    from opencharacter.eval.records import EvalPersona
    from opencharacter.eval.stages import generate_questions
    from opencharacter.records import Sampling
    from opencharacter.store import RunStore

    engine = Engine(build_backend(BackendConfig()), RunStore(tmp_path / "q"))
    persona = EvalPersona(persona_id="p", persona="A beekeeper in rural Slovenia who worries about climate change.")
    questions = asyncio.run(generate_questions(engine, persona, 1, Sampling(temperature=0.7, max_tokens=200), 3))
    assert [q.task for q in questions] == [t.name for t in TASKS]
    assert all(len(q.question.split()) >= 3 for q in questions)


class _CountingBackend:
    """Wraps the fake backend: records how many question calls are in flight at once, fails one task."""

    def __init__(self, fail_task: str | None = None) -> None:
        from opencharacter.backends import build_backend
        from opencharacter.config import BackendConfig

        self.inner = build_backend(BackendConfig(backend="fake"))
        self.fail_task, self.in_flight, self.peak, self.finished = fail_task, 0, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def complete(self, request):
        from opencharacter.errors import BackendError

        is_question = "questions" in json.dumps(request.response_schema or {})
        if not is_question:
            return await self.inner.complete(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            if self.fail_task and self.fail_task in request.messages[-1].content:
                raise BackendError("injected", retryable=False)
            self.finished += 1
            return await self.inner.complete(request)
        finally:
            self.in_flight -= 1


def test_a_personas_question_calls_are_asked_at_once_and_a_failure_keeps_the_rest(tmp_path):
    """Five tasks' calls in flight together (a local backend batches them); one failing task fails the
    persona only after the other four finished and were cached, so a retry replays them."""
    from opencharacter.engine import Engine
    from opencharacter.errors import BackendError
    from opencharacter.eval.records import EvalPersona
    from opencharacter.eval.stages import generate_questions
    from opencharacter.records import Sampling
    from opencharacter.store import RunStore

    persona = EvalPersona(persona_id="p", persona="A beekeeper in rural Slovenia.")
    sampling = Sampling(temperature=0.7, max_tokens=64)
    backend = _CountingBackend()
    questions = asyncio.run(generate_questions(Engine(backend, RunStore(tmp_path / "a")), persona, 1, sampling, 1))
    assert [q.task for q in questions] == [t.name for t in TASKS]
    assert backend.peak == len(TASKS)

    store = RunStore(tmp_path / "b")
    failing = _CountingBackend(fail_task=TASKS[2].rubric()[:40])
    with pytest.raises(BackendError):
        asyncio.run(generate_questions(Engine(failing, store), persona, 1, sampling, 1))
    assert failing.finished == len(TASKS) - 1
    replay = _CountingBackend()
    again = asyncio.run(generate_questions(Engine(replay, store), persona, 1, sampling, 1))
    assert len(again) == len(TASKS) and replay.finished == 1  # only the failed task is asked again
