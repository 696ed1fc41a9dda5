"""The API key: read where the backend runs (its environment, else a key file), never shipped with a Ray job."""

from __future__ import annotations

import pytest

from opencharacter.config import BackendConfig, ExecutorConfig
from opencharacter.errors import ConfigError


def test_the_variable_wins_then_the_file(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n", encoding="utf-8")
    config = BackendConfig(backend="openai", api_key_env="OC_TEST_KEY", api_key_file=str(key_file))
    monkeypatch.delenv("OC_TEST_KEY", raising=False)
    assert config.api_key() == "sk-from-file"
    monkeypatch.setenv("OC_TEST_KEY", "sk-from-env")
    assert config.api_key() == "sk-from-env"
    assert "sk-" not in config.model_dump_json()  # the config holds names and paths, never the key
    monkeypatch.delenv("OC_TEST_KEY")
    missing = BackendConfig(backend="openai", api_key_env="OC_TEST_KEY", api_key_file=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"api_key_file .*none: cannot read the API key"):
        missing.api_key()
    assert BackendConfig(backend="openai", api_key_env="OC_TEST_KEY").api_key() is None


def test_the_openai_backend_sends_the_file_key(tmp_path, monkeypatch):
    from opencharacter.backends.openai_http import OpenAIBackend

    key_file = tmp_path / "key"
    key_file.write_text("sk-file-only", encoding="utf-8")
    monkeypatch.delenv("OC_TEST_KEY", raising=False)
    backend = OpenAIBackend(
        BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", api_key_env="OC_TEST_KEY",
                      api_key_file=str(key_file))
    )  # fmt: skip
    assert backend._post_headers["http://127.0.0.1:9/v1"]["Authorization"] == "Bearer sk-file-only"


def test_the_ray_executor_puts_no_key_in_the_runtime_env(tmp_path, monkeypatch):
    """Ray keeps an actor's runtime_env in the cluster's control store: `ray list actors --detail`
    and the dashboard show it to anyone on the cluster."""
    ray_executor = pytest.importorskip("opencharacter.executors.ray")
    from opencharacter.store import RunStore

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setattr(ray_executor.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 2.0})
    store = RunStore(tmp_path / "run")
    try:
        executor = ray_executor.RayExecutor(
            tmp_path / "run", store, BackendConfig(backend="openai"), ExecutorConfig(kind="ray", workers=2)
        )
        assert "sk-secret" not in repr(executor._actor_options) and "runtime_env" not in executor._actor_options
    finally:
        store.close()
