"""Kill -9 a real run mid-way, rerun it, and get exactly the files of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from opencharacter.serve.server import ScriptedResponder, serve_in_thread
from tests.conftest import read_jsonl

PERSONAS = 30
CONCURRENCY = 3


def command(personas, run, url):
    return [
        sys.executable,
        "-m",
        "opencharacter",
        "profiles",
        "--personas",
        str(personas),
        "--out",
        str(run),
        "--limit",
        str(PERSONAS),
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        "teacher",
        "--concurrency",
        str(CONCURRENCY),
        "-q",
    ]


def stored_records(run) -> int:
    try:
        with sqlite3.connect(run / "store.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path, personas_file):
    responder = ScriptedResponder(latency=0.15)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    with serve_in_thread(responder) as url:
        process = subprocess.Popen(command(personas_file, killed, url), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while stored_records(killed) < 8 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        done_at_kill = stored_records(killed)
        assert 8 <= done_at_kill < PERSONAS, "the kill must land mid-run"
        requests_before = responder.requests

        resumed = subprocess.run(command(personas_file, killed, url), capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        new_requests = responder.requests - requests_before
        # Only unfinished items are asked again; at most the ones in flight at the kill are paid twice.
        assert PERSONAS - done_at_kill <= new_requests <= PERSONAS - done_at_kill + CONCURRENCY

        uninterrupted = subprocess.run(command(personas_file, clean, url), capture_output=True, text=True, timeout=300)
        assert uninterrupted.returncode == 0, uninterrupted.stderr

    characters = read_jsonl(killed / "characters.jsonl")
    assert len(characters) == PERSONAS == len({c["character_id"] for c in characters})
    for name in ("characters.jsonl", "dialogues.jsonl", "failures.jsonl"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
