"""What a newcomer meets: one-line errors for missing paths, files with the user's umask, flags shown
as flags, evaluation reports that name models by what they are (fake backends: fast)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from opencharacter.fileio import atomic_open
from opencharacter.local_paths import looks_like_hub_id, looks_like_path
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
    lines = [line for line in out.splitlines() if "--quiet" in line or "--retry-failed" in line]
    assert len(lines) == 2 and not any("<bool>" in line for line in lines), lines


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
