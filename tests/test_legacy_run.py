"""A run directory made before the orchestration redesign (#23) resumes with today's code: 0 new calls.

`tests/data/legacy_run/` holds two run directories made by the code of main before the redesign
(how: see its pipeline.yaml). The store's schema, cache keys, record ids and pairing must be kept
byte for byte, or a rerun would pay for calls again or write other files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from opencharacter.store import RunStore

LEGACY = Path(__file__).parent / "data" / "legacy_run"
ROOT = Path(__file__).resolve().parents[1]
FILES = ("characters.jsonl", "dialogues.jsonl", "failures.jsonl")


def _copy(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run)
    return run


def _last_session(run: Path) -> dict:
    store = RunStore(run)
    try:
        return store.sessions()[-1]
    finally:
        store.close()


def test_a_legacy_run_resumes_with_no_new_calls(tmp_path, run_cli, monkeypatch):
    run = _copy("run", tmp_path)
    monkeypatch.chdir(ROOT)  # the config names its inputs relative to the repository
    code, _, err = run_cli("run", str(LEGACY / "pipeline.yaml"), "--run", str(run), "-q")
    assert code == 3, err  # the fixture's injected failures are skipped, not retried: still incomplete
    session = _last_session(run)
    assert session["command"] == "run"
    assert session["new_calls"] == 0
    for name in FILES:
        assert (run / name).read_bytes() == (LEGACY / "run" / name).read_bytes(), name


def test_a_legacy_candidates_run_resumes_with_no_new_calls(tmp_path, run_cli):
    run = _copy("candidates_run", tmp_path)
    code, _, err = run_cli(
        "synthesize", "--run", str(run), "--instructions", str(LEGACY / "instructions.jsonl"),
        "--strategy", "generate", "--per-instruction", "2", "--candidates", "2",
        "--backend", "fake", "--model", "legacy", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert _last_session(run)["new_calls"] == 0
    for name in (*FILES, "candidates.jsonl", "preferences.jsonl"):
        assert (run / name).read_bytes() == (LEGACY / "candidates_run" / name).read_bytes(), name
