"""The run path fails loudly: locks, provenance, stable pairing, clear errors, signals, fatal errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from opencharacter.backends import register_backend
from opencharacter.backends.fake import FakeBackend
from opencharacter.errors import FatalBackendError
from opencharacter.sources.bundled import sample_path
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--quiet")
INSTRUCTIONS = sample_path("instructions.jsonl")


def profiles(run_cli, personas_file, run, limit, *extra):
    return run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", limit, *FAKE, *extra)


def synthesize(run_cli, run, *extra):
    return run_cli("synthesize", "--run", run, "--instructions", INSTRUCTIONS, *FAKE, *extra)


def pairs(run):
    return sorted((d["question_id"], d["character_id"], d["strategy"]) for d in read_jsonl(run / "dialogues.jsonl"))


def test_pairing_stays_stable_as_characters_are_added(tmp_path, run_cli, personas_file):
    """profiles on a few → synthesize → profiles on more → the same synthesize: exactly the earlier pairs."""
    run = tmp_path / "run"
    assert profiles(run_cli, personas_file, run, 5)[0] == 0
    assert synthesize(run_cli, run, "--limit", 20, "--per-instruction", 2)[0] == 0
    before = pairs(run)
    assert len(before) == 40
    assert profiles(run_cli, personas_file, run, 40)[0] == 0
    code, _, err = synthesize(run_cli, run, "--limit", 20, "--per-instruction", 2)
    assert code == 0 and "0 new" in err
    assert pairs(run) == before
    # New instructions are paired over the grown pool; a larger --per-instruction extends, keeping the first.
    assert synthesize(run_cli, run, "--limit", 24, "--per-instruction", 3)[0] == 0
    grown = pairs(run)
    assert set(before) <= set(grown) and len(grown) == 24 * 3
    assert {c for q, c, _ in grown} - {c for q, c, _ in before}, "later draws use the new characters"


def test_per_instruction_above_the_characters_is_an_error(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert profiles(run_cli, personas_file, run, 3)[0] == 0
    code, _, err = synthesize(run_cli, run, "--limit", 2, "--per-instruction", 5)
    assert code == 2 and "--per-instruction 5" in err and "the 3 this run has" in err
    assert read_jsonl(run / "dialogues.jsonl") == []


def test_rewrite_on_instructions_without_answers_says_why(tmp_path, run_cli, personas_file, write_jsonl):
    run = tmp_path / "run"
    assert profiles(run_cli, personas_file, run, 3)[0] == 0
    unanswered = write_jsonl("questions.jsonl", [{"instruction": f"Question {i}?", "output": ""} for i in range(3)])
    code, _, err = run_cli(
        "synthesize", "--run", run, "--instructions", unanswered, "--strategy", "rewrite", "--backend", "fake"
    )
    assert code == 0, err
    assert "3 of 3 instructions have no answer to rewrite" in err


def test_synthesize_on_a_missing_run_leaves_nothing_behind(tmp_path, run_cli):
    missing = tmp_path / "nope"
    code, _, err = synthesize(run_cli, missing, "--limit", 1)
    assert code == 2 and "not a run directory" in err and "opencharacter profiles" in err
    assert not missing.exists()


def test_other_settings_on_the_same_run_are_refused(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert profiles(run_cli, personas_file, run, 3)[0] == 0
    assert synthesize(run_cli, run, "--limit", 2, "--per-instruction", 1)[0] == 0
    files = {p.name: p.read_bytes() for p in run.glob("*.jsonl")}
    code, _, err = profiles(run_cli, personas_file, run, 4, "--temperature", 1.1)
    assert code == 2 and "sampling.temperature 0.7 → 1.1" in err and "new --out" in err
    code, _, err = synthesize(run_cli, run, "--limit", 3, "--per-instruction", 1, "--max-tokens", 64)
    assert code == 2 and "dialogues:generate" in err and "sampling.max_tokens 512 → 64" in err
    code, _, err = synthesize(run_cli, run, "--limit", 3, "--per-instruction", 1, "--seed", 9)
    assert code == 2 and "seed 0, not 9" in err
    assert {p.name: p.read_bytes() for p in run.glob("*.jsonl")} == files  # nothing was mixed in
    assert profiles(run_cli, personas_file, run, 4)[0] == 0  # the same settings resume as before


HOLD_LOCK = """
import sys, time
from opencharacter.store.lock import RunLock
RunLock(sys.argv[1], "profiles").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_command_on_a_locked_run_says_who_holds_it(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = profiles(run_cli, personas_file, run, 2)
        assert code == 2 and f"in use by pid {holder.pid} (opencharacter profiles, since" in err
        assert not (run / "store.sqlite").exists()
    finally:
        holder.kill()  # SIGKILL: the lock dies with the process, no stale lock is left
        holder.wait()
    assert profiles(run_cli, personas_file, run, 2)[0] == 0


class FailsAfterThree(FakeBackend):
    """401 on the fourth call: what a revoked key looks like mid-run."""

    async def complete(self, request):
        if self.calls >= 3:
            self.calls += 1
            raise FatalBackendError("http://127.0.0.1:9/v1 answered 401 Unauthorized: check $OPENAI_API_KEY", 401)
        return await super().complete(request)


def test_a_fatal_backend_error_stops_the_run_with_one_line_and_exit_1(tmp_path, run_cli, personas_file):
    register_backend("fails-after-three", FailsAfterThree)
    run = tmp_path / "run"
    code, _, err = run_cli(
        "profiles", "--personas", personas_file, "--out", run, "--limit", 30, "--backend", "fails-after-three",
        "--concurrency", "1", "-q",
    )  # fmt: skip
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last == "error: http://127.0.0.1:9/v1 answered 401 Unauthorized: check $OPENAI_API_KEY (HTTP 401)"
    assert len(read_jsonl(run / "characters.jsonl")) == 3  # committed work kept and written out
    assert read_jsonl(run / "failures.jsonl") == []


def cli(personas_file, run, config):
    return [
        sys.executable, "-m", "opencharacter", "profiles", "--personas", str(personas_file), "--out", str(run),
        "--limit", "24", "--config", str(config), "--concurrency", "2", "-q",
    ]  # fmt: skip


def stored(run) -> int:
    try:
        with sqlite3.connect(run / "store.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM records WHERE stage = 'profiles'").fetchone()[0]
    except sqlite3.Error:
        return 0


def stop_with(signum, command, run, env) -> str:
    """Start the CLI, let it commit a few more records, send `signum`; returns its stderr."""
    start = stored(run)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 90
    while stored(run) < start + 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 128 + signum, err
    return err


def test_sigterm_and_sigint_stop_cleanly_write_the_files_and_a_rerun_completes(tmp_path, personas_file, run_cli):
    config = tmp_path / "slow.yaml"
    config.write_text("backend:\n  backend: fake\n  options: {delay: 0.15}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run, clean = tmp_path / "stopped", tmp_path / "clean"
    for signum in (signal.SIGTERM, signal.SIGINT):  # 143, then 130 on the resumed run
        err = stop_with(signum, cli(personas_file, run, config), run, env)
        assert "interrupted: rerun the same command to resume" in err and "opencharacter profiles" in err
        written = read_jsonl(run / "characters.jsonl")
        assert 3 <= len(written) < 24 and len(written) == stored(run)  # the files are the store's state
    # The same command, resumed (the fake's delay is no part of the data), equals an uninterrupted run.
    resume = ("profiles", "--personas", personas_file, "--limit", 24, "--backend", "fake", "-q")
    assert run_cli(*resume, "--out", run)[0] == 0
    assert run_cli(*resume, "--out", clean)[0] == 0
    for name in ("characters.jsonl", "dialogues.jsonl", "failures.jsonl"):
        assert (run / name).read_bytes() == (clean / name).read_bytes(), name


def test_dry_run_counts_what_is_left_and_the_real_run_makes_exactly_those_calls(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    code, _, err = profiles(run_cli, personas_file, run, 5, "--dry-run")
    assert code == 0 and "│ profiles │     5 │    0 │         0 │       5 │     5 │" in err
    assert not run.exists()  # nothing written, not even the directory
    assert profiles(run_cli, personas_file, run, 3)[0] == 0
    code, _, err = profiles(run_cli, personas_file, run, 5, "--dry-run")
    assert "│ profiles │     5 │    3 │         0 │       2 │     2 │" in err
    code, _, err = profiles(run_cli, personas_file, run, 5)
    assert code == 0 and "calls: 2 new" in err

    args = ("--limit", 8, "--per-instruction", 2, "--strategy", "generate", "--strategy", "rewrite")
    code, _, err = synthesize(run_cli, run, *args, "--dry-run")
    rows = [line for line in err.splitlines() if line.startswith(("│ generate", "│ rewrite"))]
    planned = sum(int(row.split("│")[6]) for row in rows)
    assert code == 0 and len(rows) == 2 and read_jsonl(run / "dialogues.jsonl") == []
    code, _, err = synthesize(run_cli, run, *args)
    assert code == 0 and f"calls: {planned} new" in err  # multi-turn generate: one call per turn


def test_a_file_as_run_directory_is_one_clear_line(tmp_path, run_cli, personas_file):
    taken = tmp_path / "taken"
    taken.write_text("not a run", encoding="utf-8")
    code, _, err = profiles(run_cli, personas_file, taken, 1)
    assert code == 2 and err.strip().splitlines()[-1] == f"error: {taken} exists and is not a directory"
