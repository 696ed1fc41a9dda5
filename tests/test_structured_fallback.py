"""Servers that reject `response_format: json_schema`: the backend steps down and remembers, per endpoint."""

from __future__ import annotations

import asyncio

from aiohttp import web

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.records import ChatMessage, ChatRequest
from opencharacter.serve.server import ScriptedResponder, serve_in_thread
from opencharacter.stages.profiles import PROFILE_SCHEMA, parse_profile
from opencharacter.store import RunStore
from tests.conftest import read_jsonl

# What llama-cpp-python's server answers to a json_schema response_format: its request model only
# allows 'text' and 'json_object', and its route handler turns the validation error into HTTP 500.
LLAMA_CPP_PYTHON_ERROR = {
    "error": {
        "message": (
            "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
            "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
            "'ctx': {'expected': \"'text' or 'json_object'\"}}]"
        ),
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


class LlamaCppPythonStandIn:
    """Rejects json_schema exactly as llama-cpp-python does; takes json_object (+ schema) and text."""

    def __init__(self, accepts=("text", "json_object")) -> None:
        self.inner = ScriptedResponder()
        self.accepts = accepts
        self.formats: list[str] = []
        self.last_messages: list[dict] = []

    async def __call__(self, payload):
        kind = (payload.get("response_format") or {}).get("type", "text")
        self.formats.append(kind)
        self.last_messages = payload["messages"]
        if kind not in self.accepts:
            if kind == "json_object":
                return web.json_response({"error": {"message": "response_format is not supported"}}, status=400)
            return web.json_response(LLAMA_CPP_PYTHON_ERROR, status=500)
        return await self.inner(payload)


def profile_calls(tmp_path, url, count, max_retries=0):
    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=url, model="m"))
        engine = Engine(backend, RunStore(tmp_path / "run"), max_retries=max_retries)
        try:
            results = []
            for i in range(count):  # one at a time, so the order of formats is deterministic
                request = ChatRequest(
                    messages=[ChatMessage(role="user", content=f"persona {i}")],
                    response_schema=PROFILE_SCHEMA,
                    schema_name="character_profile",
                )
                results.append(await engine.generate(request, prompt_id="p@v1"))
            return results, engine, backend
        finally:
            await backend.aclose()
            engine.store.close()

    return asyncio.run(main())


def test_json_schema_rejected_like_llama_cpp_python_falls_back_to_json_object_and_remembers(tmp_path):
    server = LlamaCppPythonStandIn()
    with serve_in_thread(server) as url:
        results, engine, backend = profile_calls(tmp_path, url, count=3)
    assert all(parse_profile(c).age >= 1 for c in results)  # valid profiles, with no retry spent
    assert server.formats == ["json_schema", "json_object", "json_object", "json_object"]
    assert engine.stats.retries == 0
    (stats,) = backend.endpoint_stats()
    assert stats.structured_output == "json_object" and stats.failures == 0 and stats.served == 3


def test_a_server_taking_neither_gets_the_schema_in_the_prompt(tmp_path):
    server = LlamaCppPythonStandIn(accepts=("text",))
    with serve_in_thread(server) as url:
        results, _, backend = profile_calls(tmp_path, url, count=2)
    assert server.formats == ["json_schema", "json_object", "text", "text"]
    assert "JSON schema" in server.last_messages[-1]["content"]
    assert results[0].text.startswith("echo: persona 0")  # the stage's validation decides what this is worth
    assert backend.endpoint_stats()[0].structured_output == "prompt"


def test_profiles_through_the_cli_against_the_llama_cpp_python_stand_in(tmp_path, run_cli, personas_file):
    server = LlamaCppPythonStandIn()
    run = tmp_path / "run"
    with serve_in_thread(server) as url:
        code, _, err = run_cli(
            "profiles", "--personas", personas_file, "--out", run, "--limit", 4, "--backend", "openai",
            "--base-url", url, "--model", "llama", "-q",
        )  # fmt: skip
    assert code == 0, err
    assert len(read_jsonl(run / "characters.jsonl")) == 4
    assert server.formats.count("json_schema") <= 4 and server.formats[-1] == "json_object"
