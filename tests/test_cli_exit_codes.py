"""Exit codes a script can trust, and one line instead of a traceback, whatever typer is installed."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opencharacter.errors import FatalBackendError, Interrupted, RunIncomplete

SRC = Path(__file__).resolve().parents[1] / "src"
RESUME = "interrupted: rerun the same command to resume"


@pytest.fixture
def persona(tmp_path) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_text('{"persona": "A retired ferry captain who paints harbours."}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["profiles"],
        ["profiles", "--bogus"],
        ["profiles", "--personas", "p.jsonl", "--out", "r", "--concurrency", "abc"],
        ["--bogus"],
        ["eval", "--bogus"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, run_cli):
    code, _, err = run_cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2 and "Traceback" not in err
    if len(lines) == 2:
        assert "--help" in lines[1]


def test_ctrl_c_anywhere_exits_130_and_says_how_to_resume(tmp_path, run_cli, persona, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("opencharacter.cli.synth.PersonaFile", interrupted)
    code, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--backend", "fake")
    assert code == 130 and err.strip() == RESUME


def test_a_real_sigint_while_reading_input_exits_130(tmp_path):
    """A real process and a real signal: the CLI blocks reading a FIFO until it is interrupted."""
    fifo = tmp_path / "personas.jsonl"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "opencharacter", "profiles", "--personas", str(fifo), "--out", str(tmp_path / "r")]
    # A shell running us in the background may have set SIGINT to "ignore", which children inherit
    # and Python then keeps: give the child the default disposition, as an interactive shell would.
    process = subprocess.Popen(
        command,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        with fifo.open("w") as writer:  # returns once the CLI has opened the FIFO for reading
            writer.write('{"persona": "A beekeeper"}')
            writer.flush()
            time.sleep(1)  # let it read the line and block for more (a signal at start-up is another test)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == RESUME and "Traceback" not in err


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (Interrupted(signal.SIGTERM), 143, RESUME),
        (RunIncomplete(2, 10), 3, "error: 2 of 10 items failed (see failures.jsonl)"),
        (FatalBackendError("http://x/v1 answered 401 Unauthorized: check $OPENAI_API_KEY", 401), 1, "error: http://x"),
    ],
)
def test_run_contracts_print_one_line_and_their_exit_code(tmp_path, run_cli, persona, monkeypatch, error, code, line):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("opencharacter.cli.synth.PersonaFile", fail)
    got, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--backend", "fake")
    assert got == code and err.startswith(line) and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("opencharacter.store.RunStore.put_record", sqlite3.OperationalError("database or disk is full")),
        ("opencharacter.pipeline.session.write_run_files", OSError(errno.ENOSPC, "No space left on device")),
    ],
)
def test_disk_full_is_one_line_that_says_a_rerun_resumes(tmp_path, run_cli, persona, monkeypatch, target, error):
    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, full)
    code, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--backend", "fake", "-q")
    last = err.strip().splitlines()[-1]  # after the usual "read …" line
    assert code == 1 and "Traceback" not in err and err.count("error:") == 1, err
    assert last.startswith("error: the disk is full") and "rerun the same command" in last


def test_other_os_errors_still_show_their_traceback(tmp_path, run_cli, persona, monkeypatch):
    """Only ENOSPC means "disk full"; anything else is a bug to see, not to dress up."""

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("opencharacter.pipeline.session.write_run_files", broken)
    with pytest.raises(OSError, match="Input/output"):
        run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--backend", "fake", "-q")


def test_unknown_top_level_key_under_config_is_rejected_like_run(tmp_path, run_cli, persona):
    config = tmp_path / "c.yaml"
    config.write_text("profile:\n  max_attempts: 2\n", encoding="utf-8")  # a typo of `profiles:`
    code, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--config", config)
    assert code == 2 and f"{config}: profile: Extra inputs are not permitted" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    config.write_text("backend: fake\n", encoding="utf-8")
    code, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--config", config)
    assert code == 2 and "backend: must be a mapping of settings" in err


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_below_one_is_rejected(tmp_path, run_cli, persona, limit):
    code, _, err = run_cli("profiles", "--personas", persona, "--out", tmp_path / "r", "--limit", limit)
    assert code == 2 and "--limit must be a positive number" in err and not (tmp_path / "r").exists()
