"""The openai backend against a real OpenAI-compatible server on 127.0.0.1, with fault injection."""

from __future__ import annotations

import asyncio
import json

import pytest

from opencharacter.backends import build_backend
from opencharacter.backends.openai_http import build_payload
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError, ConfigError
from opencharacter.records import ChatMessage, ChatRequest
from opencharacter.serve.server import Faults, ScriptedResponder, serve_in_thread
from opencharacter.stages.profiles import PROFILE_SCHEMA, parse_profile
from opencharacter.store import RunStore
from tests.conftest import read_jsonl

REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="Hello there")])


def complete(base_url, request=REQUEST, tmp_path=None, **config):
    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=base_url, model="m", **config))
        engine = Engine(backend, RunStore(tmp_path / "run"), max_retries=config.get("max_retries", 6))
        try:
            return await engine.generate(request, prompt_id="t@v1"), engine.stats
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_payload_carries_sampling_and_json_schema():
    request = ChatRequest(messages=REQUEST.messages, response_schema=PROFILE_SCHEMA, schema_name="character_profile")
    payload = build_payload(request, "llama")
    assert payload["model"] == "llama" and payload["max_tokens"] == 512 and payload["temperature"] == 0.7
    assert payload["response_format"]["type"] == "json_schema"
    assert payload["response_format"]["json_schema"]["schema"]["required"][0] == "name"
    assert "response_format" not in build_payload(REQUEST, "llama")


def test_text_and_structured_completions_over_a_socket(tmp_path):
    with serve_in_thread(ScriptedResponder()) as url:
        completion, stats = complete(url, tmp_path=tmp_path)
        assert completion.text == "echo: Hello there" and completion.completion_tokens > 0
        structured = ChatRequest(messages=REQUEST.messages, response_schema=PROFILE_SCHEMA)
        profile_completion, _ = complete(url, structured, tmp_path=tmp_path)
    assert parse_profile(profile_completion).age >= 1
    assert stats.new_calls == 1


@pytest.mark.parametrize(
    "faults",
    [Faults(server_errors=2), Faults(malformed=2)],
    ids=["500s", "malformed-json"],
)
def test_transient_faults_are_retried(tmp_path, faults):
    responder = ScriptedResponder(faults=faults)
    with serve_in_thread(responder) as url:
        completion, stats = complete(url, tmp_path=tmp_path)
    assert completion.text == "echo: Hello there"
    # the first fault is re-sent at once by the backend, the second costs an engine retry
    assert responder.requests == 3 and stats.retries == 1


def test_429s_are_waited_out_without_spending_retries(tmp_path):
    responder = ScriptedResponder(faults=Faults(rate_limits=2, retry_after=0.2))
    with serve_in_thread(responder) as url:
        completion, stats = complete(url, tmp_path=tmp_path, max_retries=0)
    assert completion.text == "echo: Hello there"
    assert responder.requests == 3 and stats.retries == 0


def test_timeouts_are_retried(tmp_path):
    responder = ScriptedResponder(faults=Faults(hangs=1, hang_seconds=5))
    with serve_in_thread(responder) as url:
        completion, _ = complete(url, tmp_path=tmp_path, timeout=0.5)
    assert completion.text.startswith("echo") and responder.requests == 2


def test_persistent_failure_surfaces_as_backend_error(tmp_path):
    with (
        serve_in_thread(ScriptedResponder(faults=Faults(server_errors=100))) as url,
        pytest.raises(BackendError, match="500"),
    ):
        complete(url, tmp_path=tmp_path, max_retries=1)


def test_api_key_comes_from_the_named_variable_and_is_never_stored(tmp_path, monkeypatch, run_cli, personas_file):
    seen = []

    class KeyCheck(ScriptedResponder):
        async def __call__(self, payload):
            return await super().__call__(payload)

    responder = KeyCheck()
    from aiohttp import web

    from opencharacter.serve import server

    original = server.build_app

    def capturing_app(resp, model_name="opencharacter"):
        app = original(resp, model_name)

        @web.middleware
        async def grab(request, handler):
            seen.append(request.headers.get("Authorization"))
            return await handler(request)

        app.middlewares.append(grab)
        return app

    monkeypatch.setattr(server, "build_app", capturing_app)
    monkeypatch.setenv("MY_SECRET_KEY", "sk-test-123456")
    run = tmp_path / "run"
    with serve_in_thread(responder) as url:
        code, _, err = run_cli(
            "profiles",
            "--personas",
            personas_file,
            "--out",
            run,
            "--limit",
            2,
            "--backend",
            "openai",
            "--base-url",
            url,
            "--api-key-env",
            "MY_SECRET_KEY",
            "--model",
            "teacher",
            "-q",
        )
    assert code == 0, err
    assert seen and all(h == "Bearer sk-test-123456" for h in seen)
    assert len(read_jsonl(run / "characters.jsonl")) == 2
    for path in run.rglob("*"):
        if path.is_file():
            assert b"sk-test-123456" not in path.read_bytes(), path
    assert "MY_SECRET_KEY" in (run / "README.md").read_text()


def test_openai_without_key_or_url_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_backend(BackendConfig(backend="openai"))


def test_bad_request_is_not_retried(tmp_path):
    class Rejects(ScriptedResponder):
        async def __call__(self, payload):
            from aiohttp import web

            self.requests += 1
            return web.json_response({"error": {"message": "prompt is too long"}}, status=400)

    responder = Rejects()
    with serve_in_thread(responder) as url, pytest.raises(BackendError) as caught:
        complete(url, tmp_path=tmp_path)
    assert caught.value.status == 400 and not caught.value.retryable and responder.requests == 1
    assert "prompt is too long" in str(caught.value)
    json.dumps(caught.value.args)  # picklable args
