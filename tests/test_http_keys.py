"""Where the openai backend sends the API key: two real servers on 127.0.0.1, one must never see it."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest
from aiohttp import web

from opencharacter.backends import build_backend
from opencharacter.backends.http_keys import key_destinations, warn_plain_http
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, FatalBackendError
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.serve.server import ScriptedResponder, serve_in_thread

KEY = "sk-routing-test-0123456789abcdef"


class Recording(ScriptedResponder):
    """Answers like the scripted server and remembers the Authorization header of every request."""

    def __init__(self, status: int = 200, **kwargs) -> None:
        super().__init__(**kwargs)
        self.status, self.keys = status, []

    async def __call__(self, payload):
        self.keys.append(AUTHORIZATION.get())
        if self.status != 200:
            return web.json_response({"error": {"message": "no key"}}, status=self.status)
        return await super().__call__(payload)


# Each request is handled in its own task, so a context variable is that request's alone.
AUTHORIZATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("authorization", default=None)


@web.middleware
async def remember_authorization(request, handler):
    AUTHORIZATION.set(request.headers.get("Authorization"))
    return await handler(request)


@pytest.fixture(autouse=True)
def _record_headers(monkeypatch):
    from opencharacter.serve import server

    original = server.build_app

    def app(*args, **kwargs):
        built = original(*args, **kwargs)
        built.middlewares.append(remember_authorization)
        return built

    monkeypatch.setattr(server, "build_app", app)


def ask(base_url, count=4, **config):
    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=base_url, model="m", **config))
        try:
            requests = [
                ChatRequest(messages=[ChatMessage(role="user", content=f"q{i}")], sampling=Sampling(max_tokens=4))
                for i in range(count)
            ]
            return await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_the_default_key_goes_only_to_the_provider_never_to_another_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    provider, other = Recording(), Recording()
    with serve_in_thread(provider) as provider_url, serve_in_thread(other) as other_url:
        # OPENAI_BASE_URL is the provider the key was issued for (the OpenAI SDK's own pairing).
        monkeypatch.setenv("OPENAI_BASE_URL", provider_url)
        results = ask([provider_url, other_url], count=16)
    assert all(not isinstance(r, Exception) for r in results)
    assert provider.keys and set(provider.keys) == {f"Bearer {KEY}"}
    assert other.keys and set(other.keys) == {None}  # served its share, never saw the key


def test_an_explicit_api_key_env_goes_to_every_base_url_of_the_fleet(monkeypatch):
    monkeypatch.setenv("OC_ROUTING_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one-9999999999")
    first, second = Recording(), Recording()
    with serve_in_thread(first) as first_url, serve_in_thread(second) as second_url:
        results = ask([first_url, second_url], count=16, api_key_env="OC_ROUTING_KEY")
    assert all(not isinstance(r, Exception) for r in results)
    assert set(first.keys) == set(second.keys) == {f"Bearer {KEY}"}


def test_a_server_the_default_key_was_kept_from_says_how_to_send_it(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    locked = Recording(status=401)
    with serve_in_thread(locked) as url:
        [error] = ask(url, count=1)
    assert isinstance(error, FatalBackendError) and error.status == 401
    assert "--api-key-env OPENAI_API_KEY" in str(error) and locked.keys == [None]


def test_a_redirect_is_not_followed_so_the_key_never_travels_with_it(monkeypatch):
    monkeypatch.setenv("OC_ROUTING_KEY", KEY)
    elsewhere = Recording()
    with serve_in_thread(elsewhere) as elsewhere_url:

        async def redirect(payload):
            return web.Response(status=307, headers={"Location": f"{elsewhere_url}/chat/completions"})

        with serve_in_thread(redirect) as url:
            [error] = ask(url, count=1, api_key_env="OC_ROUTING_KEY")
    assert isinstance(error, BackendError) and error.status == 307 and "not followed" in str(error)
    assert elsewhere.keys == []


def test_plain_http_to_another_host_warns_and_loopback_does_not(caplog):
    config = BackendConfig(backend="openai", api_key_env="OC_ROUTING_KEY")
    urls = ["http://10.0.0.7:8000/v1", "http://127.0.0.1:8000/v1", "https://gpu.example/v1", "http://localhost:1/v1"]
    keyed = key_destinations(config, urls)
    assert keyed == [True, True, True, True]
    with caplog.at_level(logging.WARNING):
        assert warn_plain_http(urls, keyed, "OC_ROUTING_KEY") == ["http://10.0.0.7:8000/v1"]
    assert "plain http://" in caplog.text and "10.0.0.7" in caplog.text
    default = BackendConfig(backend="openai")
    assert key_destinations(default, ["https://api.openai.com/v1", "http://10.0.0.7:8000/v1"]) == [True, False]
