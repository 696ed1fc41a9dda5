"""A command's session: no I/O until opened, released on any failure; a dry run refuses what the command would."""

from __future__ import annotations

import pytest

from opencharacter.config import BackendConfig, ExecutorConfig
from opencharacter.errors import ConfigError
from opencharacter.executors import register_executor
from opencharacter.pipeline.session import RunSession
from opencharacter.registry import EXECUTORS
from opencharacter.sources.bundled import sample_path
from opencharacter.store.lock import RunLock

FAKE = ("--backend", "fake", "--quiet")


def test_constructing_a_session_touches_nothing_and_a_failed_open_releases_the_lock(tmp_path):
    run = tmp_path / "run"
    session = RunSession(run, BackendConfig(backend="fake"), "profiles", False)
    assert not run.exists()  # no lock, no store, no backend yet
    with session:
        assert (run / "store.sqlite").exists() and session.backend.model_id == "fake:embedded"
    RunLock(run, "next").acquire().release()  # leaving the block released it (the session never ran)

    other = RunSession(run, BackendConfig(backend="fake", model="other"), "profiles", False)
    with pytest.raises(ConfigError, match="holds data made by fake:embedded, not fake:other"), other:
        pass
    RunLock(run, "next").acquire().release()  # refused teacher: store and lock released on the way out

    def broken(context):
        raise ConfigError("no cluster here")

    register_executor("broken", broken)
    try:
        failing = RunSession(run, BackendConfig(backend="fake"), "profiles", False, ExecutorConfig(kind="broken"))
        with pytest.raises(ConfigError, match="no cluster here"):
            failing.open()  # the last resource to be built fails: everything before it is released
    finally:
        EXECUTORS._entries.pop("broken")
    RunLock(run, "next").acquire().release()


def test_a_dry_run_refuses_another_pairing_seed_as_the_command_would(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 4, *FAKE)[0] == 0
    synthesize = ("synthesize", "--run", run, "--instructions", sample_path("instructions.jsonl"), "--limit", 3)
    assert run_cli(*synthesize, "--per-instruction", 2, *FAKE)[0] == 0
    code, _, err = run_cli(*synthesize, "--per-instruction", 2, "--seed", 9, *FAKE, "--dry-run")
    assert code == 2 and "pairs instructions with seed 0, not 9" in err
    code, _, err = run_cli(*synthesize, "--per-instruction", 2, "--temperature", 1.3, *FAKE, "--dry-run")
    assert code == 2 and "temperature 0.7 → 1.3" in err
    code, _, err = run_cli(*synthesize, "--per-instruction", 2, *FAKE, "--dry-run")
    assert code == 0 and "dry run" in err
