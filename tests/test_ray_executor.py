"""The Ray executor on a real local Ray (started and stopped here): same files as a local run, and a
worker killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from opencharacter.config import BackendConfig, ExecutorConfig, ProfilesConfig
from opencharacter.errors import MissingDependencyError, OpenCharacterError
from opencharacter.executors.shards import ShardSpec, open_shard
from opencharacter.serve.server import ScriptedResponder, serve_in_thread
from opencharacter.sources import load_personas
from opencharacter.sources.bundled import sample_path
from opencharacter.stages.profiles import ProfileStage, profile_items
from tests.conftest import read_jsonl

ray = pytest.importorskip("ray", reason="the Ray executor needs the extra: pip install 'opencharacter[ray]'")
ray_executor = pytest.importorskip("opencharacter.executors.ray")

# The fault-injecting stage below travels to the workers by value (they need not import the tests).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
FILES = ("characters.jsonl", "dialogues.jsonl", "failures.jsonl")


@pytest.fixture(scope="module")
def local_ray():
    """A two-CPU Ray on this machine for the module; the executor finds it and leaves it running."""
    for attempt in range(2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
            break
        except Exception:  # Ray's fixed 30 s raylet start-up limit, on an overloaded machine
            ray.shutdown()
            if attempt:
                raise
    yield ray
    ray.shutdown()


def pipeline_yaml(tmp_path: Path, personas_file: Path, backend: str, executor: str = "") -> Path:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
backend: {backend}
personas: {{path: {personas_file}, limit: 10}}
instructions:
  - {{path: {sample_path("instructions.jsonl")}, limit: 5, strategies: [generate, rewrite]}}
synthesis: {{per_instruction: 2}}
{executor}
""",
        encoding="utf-8",
    )
    return config


def files(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in FILES}


def rows(run: Path, table: str) -> int:
    with sqlite3.connect(run / "store.sqlite") as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_ray_run_writes_the_files_of_a_local_run(tmp_path, run_cli, personas_file, local_ray):
    config = pipeline_yaml(tmp_path, personas_file, "{backend: fake}", "executor: {kind: ray, workers: 2}")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run_cli("run", config, "--run", local, "--executor", "local", "-q")[0] == 0
    code, _, err = run_cli("run", config, "--run", on_ray, "-q")
    assert code == 0, err
    assert files(on_ray) == files(local)
    assert len(read_jsonl(on_ray / "dialogues.jsonl")) == 5 * 2 * 2
    # The work really ran in the two shard stores, and the merged store has each call once.
    shard_records = [rows(on_ray / "shards" / f"{i}-of-2", "records") for i in range(2)]
    assert all(shard_records) and rows(on_ray, "calls") == rows(local, "calls")
    code, _, err = run_cli("run", config, "--run", on_ray, "-q")  # a rerun sends nothing
    assert code == 0 and "0 new" in err
    assert files(on_ray) == files(local)


def test_ray_over_a_real_http_server_equals_local(tmp_path, run_cli, personas_file, local_ray):
    with serve_in_thread(ScriptedResponder()) as url:
        backend = f"{{backend: openai, base_url: '{url}', model: teacher, concurrency: 4}}"
        config = pipeline_yaml(tmp_path, personas_file, backend)
        local, on_ray = tmp_path / "local", tmp_path / "ray"
        assert run_cli("run", config, "--run", local, "-q")[0] == 0
        code, _, err = run_cli("run", config, "--run", on_ray, "--executor", "ray", "--workers", "3", "-q")
    assert code == 0, err
    assert files(on_ray) == files(local) and len(read_jsonl(on_ray / "characters.jsonl")) == 10


class CrashingProfiles(ProfileStage):
    """Profiles, but the worker process dies (os._exit, no cleanup) on its `crash_at`-th item while
    `crashes` is above the number of crashes `marks` records, after writing how many records its
    shard store had committed then."""

    def __init__(self, sampling, max_attempts, model, marks: str, crashes: int, crash_at: int = 3) -> None:
        super().__init__(sampling, max_attempts, model)
        self.marks, self.crashes, self.crash_at, self.seen = marks, crashes, crash_at, 0

    def __reduce__(self):
        return (type(self), (self.sampling, self.max_attempts, self.model, self.marks, self.crashes, self.crash_at))

    async def __call__(self, item, generate, first_attempt):
        self.seen += 1
        crashed = len(os.listdir(self.marks))
        if self.seen == self.crash_at and crashed < self.crashes:
            Path(self.marks, f"crash-{crashed}-pid-{os.getpid()}").write_text(str(self.seen), encoding="utf-8")
            await asyncio.sleep(0.3)  # past the store's batched commit (50 ms): the items before are on disk
            os._exit(1)
        return await super().__call__(item, generate, first_attempt)


def run_crashing(run: Path, personas, marks: Path, crashes: int, workers: int = 2):
    from opencharacter.pipeline.session import RunSession, execute

    backend = BackendConfig(backend="fake", concurrency=1)
    session = RunSession(run, backend, "profiles", False, ExecutorConfig(kind="ray", workers=workers))
    config = ProfilesConfig()
    stage = CrashingProfiles(config.sampling, config.max_attempts, session.backend.model_id, str(marks), crashes)

    async def steps():
        session.results.append(await session.executor.run(stage, profile_items(personas), total=len(personas)))

    execute(session, steps)
    return session


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path, run_cli, personas_file, local_ray, monkeypatch):
    personas = load_personas(personas_file, limit=16)[0]
    local = tmp_path / "local"
    assert run_cli("profiles", "--personas", personas_file, "--limit", 16, "--out", local, "--backend", "fake")[0] == 0
    marks = tmp_path / "marks"
    marks.mkdir()
    # One crash: Ray restarts the worker and resends its chunk, which resumes from the shard store.
    run = tmp_path / "ray"
    session = run_crashing(run, personas, marks, crashes=1)
    assert len(os.listdir(marks)) == 1 and session.results[0].made + session.results[0].done_before == 16
    assert files(run) == files(local) and rows(run, "calls") == 16
    # Crashes past Ray's restarts stop the run with one clear error; a rerun completes it exactly.
    again, marks2 = tmp_path / "ray-rerun", tmp_path / "marks2"
    marks2.mkdir()
    monkeypatch.setattr(ray_executor, "RESTARTS", 1)  # give up sooner than the default 3 (each try costs ~2 s)
    with pytest.raises(OpenCharacterError, match=r"died 2 times .* rerun the same command to resume"):
        run_crashing(again, personas, marks2, crashes=99, workers=1)
    assert len(os.listdir(marks2)) == 2  # Ray restarted the worker once, then gave up
    # Each try resumed from the shard store, committed two more items and died on its third.
    assert rows(again / "shards" / "0-of-1", "records") == 2 * 2
    run_crashing(again, personas, marks2, crashes=0, workers=1)
    assert files(again) == files(local) and rows(again, "calls") == 16


def test_without_ray_the_executor_names_the_extra(tmp_path, run_cli, personas_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "opencharacter.executors.ray")
    with pytest.raises(MissingDependencyError, match=r"pip install 'opencharacter\[ray\]'"):
        import opencharacter.executors.ray  # noqa: F401
    code, _, err = run_cli("profiles", "--personas", personas_file, "--out", tmp_path / "run", "--executor", "ray")
    assert code == 2 and "pip install 'opencharacter[ray]'" in err


def test_an_error_inside_a_worker_reaches_the_user_as_one_line(tmp_path, run_cli, personas_file, local_ray):
    run = tmp_path / "run"
    stale = open_shard(run, ShardSpec(0, 1))  # a shard left by a run with another teacher
    stale.set_meta("teacher", "fake:other")
    stale.close()
    args = ("--personas", personas_file, "--limit", 4, "--out", run, "--backend", "fake", "-q")
    code, _, err = run_cli("profiles", *args, "--executor", "ray", "--workers", 1)
    assert code == 2 and "made by fake:other, not fake:embedded" in err and "Traceback" not in err
    assert not read_jsonl(run / "characters.jsonl")
