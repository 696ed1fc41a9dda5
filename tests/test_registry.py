"""The one registry of backends and executors: lazy entries, "did you mean", plug-ins selectable by config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from opencharacter.config import BackendConfig, ExecutorConfig, PipelineConfig
from opencharacter.errors import ConfigError
from opencharacter.executors import LocalExecutor, register_executor
from opencharacter.pipeline.session import RunSession, execute
from opencharacter.records import Persona
from opencharacter.registry import EXECUTORS, Registry
from opencharacter.stages.profiles import ProfileStage, profile_items
from tests.conftest import read_jsonl


def test_an_unknown_name_is_refused_with_the_closest_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'openia'; did you mean 'openai'\?"):
        BackendConfig(backend="openia")
    with pytest.raises(ValueError, match=r"unknown executor 'rya'; did you mean 'ray'\?"):
        ExecutorConfig(kind="rya")
    with pytest.raises(ValueError, match=r"unknown executor 'gpu-farm' \(choose one of local, ray"):
        ExecutorConfig(kind="gpu-farm")


def test_entries_resolve_lazily_and_a_missing_module_is_a_config_error():
    registry = Registry("widget", {"there": "opencharacter.hashing:content_hash", "gone": "opencharacter.nowhere:X"})
    from opencharacter.hashing import content_hash

    assert registry.load("there") is content_hash
    with pytest.raises(ConfigError, match="the 'gone' widget is not part of this installation"):
        registry.load("gone")


def test_validating_a_config_imports_no_backend_and_no_executor():
    """The vocabulary checks names in the registry: `config` must not reach `backends/` or `executors/`."""
    code = (
        "import sys; from opencharacter.config import PipelineConfig;"
        "PipelineConfig(personas={'path': 'p.jsonl'}, backend={'backend': 'openai'}, executor={'kind': 'ray'});"
        "print(sorted(m for m in sys.modules if m.startswith(('opencharacter.backends', 'opencharacter.executors'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_registered_executor_is_selected_by_the_config(tmp_path):
    """`register_executor` used to be unreachable: `ExecutorConfig.kind` was a fixed Literal."""
    built = []

    def counting(context):
        built.append(context.run_dir)
        return LocalExecutor.from_context(context)

    register_executor("counting", counting)
    try:
        config = PipelineConfig(personas={"path": "p.jsonl"}, executor={"kind": "counting"})
        assert config.executor.kind == "counting"
        session = RunSession(tmp_path / "run", BackendConfig(backend="fake"), "profiles", False, config.executor)
        personas = [Persona(persona=f"A keeper of lighthouse number {n}.") for n in range(3)]

        async def steps() -> None:
            stage = ProfileStage(config.profiles.sampling, 1, session.backend.model_id)
            session.results.append(await session.executor.run(stage, profile_items(personas)))

        execute(session, steps)
    finally:
        EXECUTORS._entries.pop("counting")
    assert built == [tmp_path / "run"]
    assert len(read_jsonl(tmp_path / "run" / "characters.jsonl")) == 3
