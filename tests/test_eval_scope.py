"""An evaluation's summary covers exactly the evaluation asked for, and is never silent for long."""

from __future__ import annotations

import io
import json
import sys
import time

import pytest

from opencharacter.eval.tasks import TASKS
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--judge-backend", "fake", "-q")


@pytest.fixture
def fast(tmp_path):
    """Fake backends and no fidelity (its embedding model is what takes time here)."""
    config = tmp_path / "eval.yaml"
    config.write_text("eval:\n  fidelity: false\n", encoding="utf-8")
    return (*FAKE, "--config", str(config))


@pytest.fixture
def benchmark(tmp_path):
    folder = tmp_path / "personagym"
    folder.mkdir()
    for persona in ("A retired ferry captain from Oslo", "A nervous first-year law student"):
        data = {task.benchmark_key: [f"As yourself, {task.name.lower()} {i}?" for i in range(2)] for task in TASKS}
        (folder / f"{persona}.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def summary_of(out):
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_a_second_judge_into_the_same_out_reports_only_its_own_verdicts(tmp_path, run_cli, benchmark, fast):
    out = tmp_path / "e"
    assert run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", "--judge", "j1", *fast)[0] == 0
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", "--judge", "j2", *fast)
    assert code == 0, err
    summary = summary_of(out)
    verdicts = read_jsonl(out / "verdicts.jsonl")
    assert summary["verdicts"] == len(verdicts) == 2 * 5
    assert {v["judge"] for v in verdicts} == {"fake:j2"} and summary["judges"] == ["fake:j2"]
    # Both judges together: every answer judged twice, and the summary says so.
    both = ("--judge", "j1", "--judge", "j2")
    assert run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", *both, *fast)[0] == 0
    assert summary_of(out)["verdicts"] == 2 * 10


def test_answers_decoded_by_an_older_backend_are_not_mixed_in(tmp_path, run_cli, benchmark, fast, monkeypatch):
    from opencharacter.backends.fake import FakeBackend

    out = tmp_path / "e"
    assert run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", *fast)[0] == 0
    monkeypatch.setattr(FakeBackend, "decoding", "penalty-on-generated")
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", *fast)
    assert code == 2 and "answers decoded by an older version" in err and "use a new --out" in err, err


def test_light_after_full_reports_the_light_evaluation(tmp_path, run_cli, benchmark, fast):
    from opencharacter.eval.stages import judge_prompt_id
    from opencharacter.eval.tasks import RUBRIC_VERSION

    out = tmp_path / "e"
    assert run_cli("eval", "--benchmark", benchmark, "--out", out, *fast)[0] == 0
    assert summary_of(out)["verdicts"] == 20
    assert run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", *fast)[0] == 0
    summary = summary_of(out)
    assert summary["light"] and summary["questions"] == summary["verdicts"] == 2 * 5
    assert len(read_jsonl(out / "answers.jsonl")) == 10 and len(read_jsonl(out / "verdicts.jsonl")) == 10
    # Verdicts record the judge prompt (template and rubric versions) they were made under.
    prompt = judge_prompt_id()
    assert prompt.startswith("eval_judge@") and prompt.endswith(f"+{RUBRIC_VERSION}")
    assert {v["prompt"] for v in read_jsonl(out / "verdicts.jsonl")} == {prompt}
    assert summary_of(out)["judge_prompt"] == prompt


def test_evaluation_in_a_log_file_prints_progress_lines(tmp_path, run_cli, benchmark, fast):
    """stderr is not a terminal here (as in CI or under nohup): each phase still reports."""
    out = tmp_path / "e"
    not_quiet = [arg for arg in fast if arg != "-q"]
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, "--light", *not_quiet)
    assert code == 0, err
    for phase in ("answers", "examples", "verdicts"):
        assert f"eval · {phase}: 10 to do (0 of 10 already in the store)" in err
        assert f"eval · {phase}: 10/10 done in " in err


def test_progress_lines_give_rate_and_eta_and_a_heartbeat_while_waiting():
    from opencharacter.engine.engine import EngineStats
    from opencharacter.eval.progress import EvalProgress

    stream = io.StringIO()
    progress = EvalProgress(EngineStats(), stream=stream, interval=0.05)
    progress.start("answers", total=4, completed=0)
    deadline = time.monotonic() + 10
    while "waiting for the first result" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "eval · answers 0/4 (0%) · waiting for the first result" in stream.getvalue()
    progress.advance(failed=0)
    progress.advance(failed=1)
    status = progress.status()
    assert status is not None and status.startswith("answers 2/4 (50%) · ") and "/s · ETA " in status
    assert status.endswith("failed 1")
    progress.finish()
    progress.close()
    assert "answers: 2/4 done in" in stream.getvalue() and progress.status() is None


@pytest.mark.parametrize(("module", "extra"), [("matplotlib", "eval"), ("transformers", "eval")])
def test_missing_extra_is_named_before_any_work(tmp_path, run_cli, benchmark, monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if not installed
    out = tmp_path / "e"
    code, _, err = run_cli("eval", "--benchmark", benchmark, "--out", out, *FAKE)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == f"error: {module} is not installed; run: pip install 'opencharacter[{extra}]'"
    assert not out.exists()
