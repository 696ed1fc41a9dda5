"""What a newcomer meets: one-line errors for missing paths, files with the user's umask, flags shown
as flags, evaluation reports that name models by what they are (fake backends: fast)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from opencharacter.fileio import atomic_open
from opencharacter.models.paths import looks_like_hub_id, looks_like_path
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--judge-backend", "fake", "-q")


def test_missing_paths_fail_at_once_with_the_closest_name(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo" / "model").mkdir(parents=True)
    code, _, err = run_cli("train", "--run", "runs/nonexistent", "--out", "m")
    assert code == 2 and err.strip() == "error: --run runs/nonexistent: no such run directory"
    code, _, err = run_cli("train", "--run", "runs/dmeo", "--out", "m")
    assert code == 2 and "did you mean runs/demo?" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", "--run", "runs/demo", "--out", "m")
    assert code == 2 and "no dialogues.jsonl" in err
    code, _, err = run_cli("train", "--data", "runs/dialogues.jsonl", "--out", "m")
    assert code == 2 and "no such file or directory" in err and "hub" not in err
    code, _, err = run_cli("train", "--data", "mydata", "--out", "m")
    assert code == 2 and "nor a hub dataset id (owner/name)" in err
    persona = "A retired sailor who paints."
    code, _, err = run_cli("chat", "--model", "runs/demo/modle", "--character", persona, "--message", "hi")
    assert code == 2 and "--model runs/demo/modle: no such model directory (did you mean runs/demo/model?)" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_hub_ids_are_told_from_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    for path in ("runs/x", "./a/b", "/abs/path", "a/b/c", "data.jsonl", "~/x"):
        assert looks_like_path(path) and not looks_like_hub_id(path), path


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_output_files_get_the_users_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_open(tmp_path / "out.jsonl") as stream:
            stream.write("{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o666 & ~umask


def test_help_shows_flags_as_flags(run_cli):
    code, out, _ = run_cli("profiles", "--help")
    assert code == 0
    lines = [line for line in out.splitlines() if any(f in line for f in ("--quiet", "--retry-failed", "--help"))]
    assert len(lines) == 3 and not any("<bool>" in line for line in lines), lines


def test_reports_name_models_show_the_baseline_and_held_out_characters(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 5, "--backend", "fake", "-q")[0] == 0
    )
    characters = read_jsonl(run / "characters.jsonl")
    model = tmp_path / "lighthouse-lora"
    model.mkdir()
    held = [c["character_id"] for c in characters[:2]]
    (model / "split.json").write_text(
        json.dumps({"train_characters": [c["character_id"] for c in characters[2:]], "validation_characters": held})
    )
    meta = {"base_model": "embedded", "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "method": "lora"}
    (model / "opencharacter.json").write_text(json.dumps({**meta, "data": str(run)}))
    base, tuned = tmp_path / "eval-base", tmp_path / "eval-tuned"
    assert run_cli("eval", "--run", run, "--out", base, "--light", "--model", "embedded", *FAKE)[0] == 0
    code, _, err = run_cli(
        "eval", "--run", run, "--out", tuned, "--light", "--model", model, "--reuse-from", base, *FAKE
    )  # fmt: skip
    assert code == 0, err
    report = (tuned / "report.md").read_text()
    title = "# Role-play evaluation: lighthouse-lora (LoRA of HuggingFaceTB/SmolLM2-135M-Instruct)"
    assert report.splitlines()[0] == title
    assert "## Against HuggingFaceTB/SmolLM2-135M-Instruct (embedded)" in report
    assert "Held out of training (2 of 5 personas" in report
    assert all(f"- {c['persona']}" in report for c in characters[:2])
    assert not any(f"- {c['persona']}" in report for c in characters[2:])
    rationales = [v["rationale"] for v in read_jsonl(tuned / "verdicts.jsonl") if v.get("rationale")]
    assert ("Judge: " in report) == bool(rationales)
    html = (tuned / "report.html").read_text()
    assert "lighthouse-lora (LoRA of" in html and "Held out of training" in html
    code, out, err = run_cli("eval", "compare", base, tuned, "--samples", 50)
    assert code == 0
    assert "lighthouse-lora (LoRA of HuggingFaceTB/SmolLM2-135M-Instruct)" in out + err


# -- the demo: phases in child processes, per-phase time and peak memory, estimates that stay true --


def test_demo_phases_run_in_children_and_the_summary_gives_time_and_peak_per_phase(tmp_path, capfd):
    from opencharacter.cli.app import main

    code = main(["demo", "--run", str(tmp_path / "d"), "--backend", "fake", "--no-train", "-q"])
    _, err = capfd.readouterr()
    assert code == 0, err
    assert "6 Character Cards" in err  # printed by the parent from the child's result
    assert len((tmp_path / "d" / "dialogues.jsonl").read_text().splitlines()) == 24
    summary = next(line for line in err.splitlines() if line.startswith("time and peak memory"))
    assert "synthesis " in summary and ", peak " in summary and "MB" in summary
    assert "[1/1] Synthesis" in err and "last time here" not in err  # no estimate for another model


def test_phase_estimates_are_true_for_every_combination(monkeypatch, tmp_path):
    from opencharacter.cli.demo_phases import DemoPhases

    last = {"synthesis": 120.0, "training": 300.0, "evaluation": 420.0}

    def estimates(names, resuming=(), previous=last):
        phases = DemoPhases(list(names), previous=dict(previous), resuming=set(resuming))
        return [phases.estimate(name) for name in names]

    full = estimates(["synthesis", "training", "evaluation"])
    assert full[0] == "last time here this phase took 2m00s; with training and evaluation still to come, 14m00s in all"
    assert full[1] == "last time here this phase took 5m00s; with evaluation still to come, 12m00s in all"
    assert full[2] == "last time here this phase took 7m00s, the last one"
    assert estimates(["synthesis"]) == ["last time here this phase took 2m00s"]  # --no-train
    assert estimates(["synthesis", "training"])[0].endswith("with training still to come, 7m00s in all")  # --no-eval
    resumed = estimates(["synthesis", "training", "evaluation"], resuming={"synthesis", "training"})
    assert resumed[0].startswith("last time here this phase took 2m00s (it resumes now: less)")
    assert resumed[0].endswith("at most 14m00s in all") and resumed[2].endswith("7m00s, the last one")
    first = estimates(["synthesis", "training", "evaluation"], previous={})
    assert first[0].startswith("the demo takes about") and first[1].startswith("no earlier timing of this phase")
    assert estimates(["synthesis"], previous={})[0].startswith("no earlier timing of this phase")
    partly = estimates(["synthesis", "training", "evaluation"], previous={"synthesis": 120.0})
    assert partly[0] == "last time here this phase took 2m00s; training and evaluation still to come"
    for text in full + resumed + first + partly:
        assert "rest of the demo" not in text


def test_resumed_phases_are_not_saved_as_timings(monkeypatch, tmp_path):
    from opencharacter.cli import demo_phases

    monkeypatch.setattr(demo_phases, "timings_file", lambda: tmp_path / "t.json")
    phases = demo_phases.DemoPhases(["synthesis", "training"], previous={"training": 300.0}, resuming={"training"})
    phases.measured = {"synthesis": 100.0, "training": 2.0}
    phases.save()
    assert json.loads((tmp_path / "t.json").read_text()) == {"training": 300.0, "synthesis": 100.0}


def _phase_that_fails(message: str) -> None:
    from opencharacter.errors import ConfigError

    raise ConfigError(message)


def test_a_phase_returns_its_result_and_raises_its_errors_in_the_parent():
    from opencharacter.errors import ConfigError
    from opencharacter.executors.processes import run_phase

    value, peak = run_phase(sorted, [3, 1, 2])
    assert value == [1, 2, 3] and peak > 10 * 2**20  # a real child's RSS: an interpreter at least
    with pytest.raises(ConfigError, match="bad input") as caught:
        run_phase(_phase_that_fails, "bad input")
    assert any("in the phase's process" in note for note in caught.value.__notes__)


PHASE_SCRIPT = """
import sys, time
from opencharacter.executors.processes import run_phase
from opencharacter.errors import Interrupted
print("started", flush=True)
try:
    run_phase(time.sleep, 60)
except Interrupted as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize(("to_group", "number", "code"), [(False, 2, 130), (True, 2, 130), (False, 15, 143)])
def test_a_signal_stops_the_phase_process_and_gives_the_exit_code(tmp_path, to_group, number, code):
    """SIGINT to the parent alone (`kill -INT`), to the process group (Ctrl-C on a terminal), SIGTERM."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen(
        [sys.executable, "-c", PHASE_SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell's job
    )
    try:
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while not psutil.Process(process.pid).children() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # let the child reach its target
        if to_group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, err
    assert err.strip().splitlines()[-1] == "interrupted: rerun the same command to resume"


def test_synthesis_writes_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    """A real pipeline run (fake backend, slowed down): plain lines with done/total, rate and ETA; none with quiet."""
    from opencharacter.cli.demo import demo_config
    from opencharacter.engine.progress import StageProgress
    from opencharacter.pipeline import run_pipeline

    monkeypatch.setattr(StageProgress, "line_interval", 0.2)
    backend = {"backend": "fake", "concurrency": 1, "options": {"delay": 0.3}}
    run_pipeline(demo_config(tmp_path / "r", 2, 2, 1, backend), fail_on_incomplete=False)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[") and "] " in line]
    assert any(line.endswith("profiles: 2 to do (0 of 2 already in the store)") for line in lines), err
    assert any("] profiles: 2/2 done in" in line for line in lines)
    periodic = [line for line in lines if " · ETA " in line]
    assert periodic and all("/s · " in line and "tok/s" in line for line in periodic), lines
    assert any(" generate " in line or " rewrite " in line for line in periodic)
    run_pipeline(demo_config(tmp_path / "q", 2, 2, 1, backend), quiet=True, fail_on_incomplete=False)
    assert " · ETA " not in capsys.readouterr().err


def test_a_phase_reports_its_own_peak_not_its_parents():
    """ru_maxrss survives fork + exec: a phase spawned by a big process used to report that size."""
    from opencharacter.executors.processes import run_phase

    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: resident, not just reserved
    _, peak = run_phase(os.getpid)
    assert 0 < peak < 400 * 2**20, peak
    del ballast
