"""The openai backend's fleet, rate control, fail-fast and hedging, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web

from opencharacter.backends import build_backend, openai_http
from opencharacter.config import BackendConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError, FatalBackendError
from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling
from opencharacter.serve.server import ScriptedResponder, serve_in_thread
from opencharacter.store import RunStore


def requests(count: int, tag: str = "r") -> list[ChatRequest]:
    sampling = Sampling(max_tokens=8)
    return [
        ChatRequest(messages=[ChatMessage(role="user", content=f"{tag} {i}")], sampling=sampling) for i in range(count)
    ]


def run_calls(tmp_path, base_url, count=1, tag="r", max_retries=6, **config):
    """Sends `count` distinct requests through the real engine; returns (results, engine, backend)."""

    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=base_url, model="m", **config))
        engine = Engine(
            backend,
            RunStore(tmp_path / f"run-{tag}"),
            concurrency=config.get("concurrency", 64),
            max_retries=max_retries,
        )
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(engine.generate(r, prompt_id="t@v1") for r in requests(count, tag)), return_exceptions=True
                ),
                60,
            )
            return results, engine, backend
        finally:
            await backend.aclose()
            engine.store.close()

    return asyncio.run(main())


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


# -- fleet ------------------------------------------------------------------------------------


def test_a_fleet_spreads_calls_and_prefers_the_less_loaded_server(tmp_path):
    fast, slow = ScriptedResponder(latency=0.01), ScriptedResponder(latency=0.3)
    with serve_in_thread(fast) as fast_url, serve_in_thread(slow) as slow_url:
        results, _, backend = run_calls(tmp_path, f"{fast_url},{slow_url}", count=60, concurrency=8)
    assert all(isinstance(r, Completion) for r in results)
    stats = {s.url: s for s in backend.endpoint_stats()}
    assert stats[fast_url].served + stats[slow_url].served == 60
    assert stats[slow_url].served >= 1
    assert stats[fast_url].served > 2 * stats[slow_url].served  # least-loaded: the fast one frees up sooner
    assert "served" in stats[fast_url].line()


def test_a_refusing_server_is_taken_out_of_the_fleet(tmp_path):
    dead = closed_port_url()
    live = ScriptedResponder()
    with serve_in_thread(live) as live_url:
        results, engine, backend = run_calls(tmp_path, [dead, live_url], count=20, max_retries=0)
    assert all(isinstance(r, Completion) for r in results)  # refused calls went to the live server at once
    stats = {s.url: s for s in backend.endpoint_stats()}
    assert stats[live_url].served == 20 and stats[dead].served == 0
    assert 1 <= stats[dead].failures < 20  # taken out after refusing, not tried for every call
    assert engine.stats.retries == 0


# -- fail fast --------------------------------------------------------------------------------


def test_nothing_listening_is_fatal_with_one_clear_line(tmp_path):
    url = closed_port_url()
    results, _, _ = run_calls(tmp_path, url, count=3)
    assert all(isinstance(r, FatalBackendError) for r in results)
    message = str(results[0])
    assert f"cannot connect to {url} (connection refused)" in message and "--base-url" in message
    assert "\n" not in message


class Answers:
    """A responder that always gives the same HTTP answer (and counts requests)."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.status, self.body, self.headers, self.requests = status, body, headers, 0

    async def __call__(self, payload):
        self.requests += 1
        return web.json_response(self.body, status=self.status, headers=self.headers)


@pytest.mark.parametrize(
    ("status", "said", "expected"),
    [
        (401, "Incorrect API key provided: sk-live-0123456789abcdef", "answered 401 Unauthorized: check $OC_TEST_KEY"),
        (403, "no access", "answered 403 Forbidden: the key in $OC_TEST_KEY may not use model 'm'"),
        (404, "The model `m` does not exist", "answered 404 Not Found: no model 'm' there"),
        (404, "404: Not Found", "no such endpoint"),
    ],
    ids=["401", "403", "404-model", "404-endpoint"],
)
def test_answers_no_retry_can_fix_are_fatal_and_mask_the_key(tmp_path, monkeypatch, status, said, expected):
    monkeypatch.setenv("OC_TEST_KEY", "sk-live-0123456789abcdef")
    responder = Answers(status, {"error": {"message": said}})
    with serve_in_thread(responder) as url:
        results, _, _ = run_calls(tmp_path, url, count=1, api_key_env="OC_TEST_KEY")
    error = results[0]
    assert isinstance(error, FatalBackendError) and error.status == status
    assert str(error).startswith(url) and expected in str(error)
    assert "0123456789abcdef" not in str(error) and "sk-live-01234567" not in str(error)
    assert responder.requests == 1


def test_an_echoed_key_is_masked_in_ordinary_errors_too(tmp_path, monkeypatch):
    monkeypatch.setenv("OC_TEST_KEY", "sk-secret-key-abcdefgh12345678")

    async def echo(payload):
        return web.json_response({"error": {"message": "bad header Bearer sk-secret-key-abcdefgh12345678"}}, status=400)

    with serve_in_thread(echo) as url:
        results, _, _ = run_calls(tmp_path, url, api_key_env="OC_TEST_KEY")
    assert isinstance(results[0], BackendError) and not isinstance(results[0], FatalBackendError)
    assert "abcdefgh12345678" not in str(results[0]) and "Bearer ***" in str(results[0])


# -- rate control -----------------------------------------------------------------------------


def test_a_4_slot_server_at_concurrency_32_fails_nothing_and_spends_no_retries(tmp_path):
    server, fixed_server = ScriptedResponder(latency=0.02, slots=4), ScriptedResponder(latency=0.02, slots=4)
    with serve_in_thread(server) as url, serve_in_thread(fixed_server) as fixed_url:
        results, engine, backend = run_calls(tmp_path, url, count=80, concurrency=32, max_retries=0)
        fixed, _, _ = run_calls(
            tmp_path, fixed_url, count=80, tag="fixed", concurrency=32, max_retries=0, adaptive_concurrency=False
        )
    assert all(isinstance(r, Completion) for r in [*results, *fixed])
    assert engine.stats.retries == 0
    (stats,) = backend.endpoint_stats()
    assert stats.served == 80 and stats.failures == 0
    assert server.rejected == stats.rate_limited > 0
    assert stats.concurrency <= 8  # AIMD came down from the ceiling to about the server's 4 slots
    assert server.rejected < fixed_server.rejected  # and so asks in vain less often than a fixed 32


def test_a_rate_limited_call_gives_up_after_rate_limit_wait(tmp_path):
    busy = Answers(429, {"error": {"message": "slow down"}})
    with serve_in_thread(busy) as url:
        results, _, _ = run_calls(tmp_path, url, max_retries=0, rate_limit_wait=0.5)
    assert isinstance(results[0], BackendError) and results[0].retryable and results[0].status == 429
    assert "kept answering 429" in str(results[0]) and busy.requests >= 3


def test_requests_per_minute_cap_spaces_the_requests(tmp_path):
    seen: list[float] = []
    server = ScriptedResponder()

    async def timed(payload):
        seen.append(time.monotonic())
        return await server(payload)

    with serve_in_thread(timed) as url:
        results, _, _ = run_calls(tmp_path, url, count=40, requests_per_minute=1200)  # 20/s, bursts of 20
    assert all(isinstance(r, Completion) for r in results)
    # Whatever the machine's speed, the cap guarantees this lower bound on the span of the sends;
    # 0.3 s allow for the first arrival being late (connection set-up on a loaded machine).
    assert seen[-1] - seen[0] >= (40 - 20) / 20 - 0.3


def test_tokens_per_minute_cap_spaces_the_requests(tmp_path):
    seen: list[float] = []
    server = ScriptedResponder()

    async def timed(payload):
        seen.append(time.monotonic())
        return await server(payload)

    # each request is counted as max_tokens 8 (+ a prompt under 4 characters); 6000/min = 100/s, bursts of 100
    with serve_in_thread(timed) as url:
        results, _, _ = run_calls(tmp_path, url, count=30, tokens_per_minute=6000)
    assert all(isinstance(r, Completion) for r in results)
    assert seen[-1] - seen[0] >= (30 * 8 - 100) / 100 - 0.3


# -- hedging and the adaptive deadline --------------------------------------------------------


class HangsOnce:
    """Answers at once, except the first sight of a request marked HANG, which hangs for a minute."""

    def __init__(self, slow_seconds: float = 0.0) -> None:
        self.inner = ScriptedResponder(latency=0.005)
        self.seen: set[str] = set()
        self.slow_seconds = slow_seconds

    async def __call__(self, payload):
        content = payload["messages"][-1]["content"]
        if content.startswith("HANG") and content not in self.seen:
            self.seen.add(content)
            await asyncio.sleep(60)
        if content.startswith("SLOW"):
            await asyncio.sleep(self.slow_seconds)
        return await self.inner(payload)


def warm_then(tmp_path, url, last: str, **config):
    """30 quick calls (latency samples), then one call whose content is `last`."""

    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=url, model="m", **config))
        engine = Engine(backend, RunStore(tmp_path / "run"), max_retries=config.get("max_retries", 6))
        try:
            await asyncio.gather(*(engine.generate(r, prompt_id="t@v1") for r in requests(30, "warm")))
            request = ChatRequest(messages=[ChatMessage(role="user", content=last)])
            started = time.monotonic()
            completion = await asyncio.wait_for(engine.generate(request, prompt_id="t@v1"), 30)
            return completion, time.monotonic() - started, engine, backend
        finally:
            await backend.aclose()
            engine.store.close()

    return asyncio.run(main())


def test_a_hung_call_is_hedged_and_the_copy_answers(tmp_path):
    with serve_in_thread(HangsOnce()) as url:
        completion, seconds, engine, backend = warm_then(tmp_path, url, "HANG please")
    assert completion.text == "echo: HANG please"
    assert seconds < 30 and engine.stats.retries == 0  # not the 60 s hang, and no retry spent
    assert backend.endpoint_stats()[0].hedges == 1


def test_without_hedging_a_hung_call_waits_for_the_adaptive_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_http, "DEADLINE_FLOOR", 1.0)
    with serve_in_thread(HangsOnce()) as url:
        completion, _, engine, backend = warm_then(tmp_path, url, "HANG again", hedging=False)
    assert completion.text == "echo: HANG again"
    assert engine.stats.retries == 1 and backend.endpoint_stats()[0].hedges == 0


def test_a_slow_but_healthy_call_is_never_lost(tmp_path, monkeypatch):
    # Cut after 1 s (adaptive floor), but the call always takes 2 s: its retry gets the full timeout.
    monkeypatch.setattr(openai_http, "DEADLINE_FLOOR", 1.0)
    monkeypatch.setattr(openai_http, "DEADLINE_MULTIPLIER", 1.0)
    with serve_in_thread(HangsOnce(slow_seconds=2.0)) as url:
        completion, _, engine, _ = warm_then(tmp_path, url, "SLOW but fine", max_retries=1, timeout=20)
    assert completion.text == "echo: SLOW but fine"
    assert engine.stats.retries == 1


def test_the_cli_takes_a_fleet_as_repeated_or_comma_separated_base_urls(tmp_path, run_cli, personas_file):
    first, second, third = ScriptedResponder(latency=0.02), ScriptedResponder(latency=0.02), ScriptedResponder()
    with serve_in_thread(first) as a, serve_in_thread(second) as b, serve_in_thread(third) as c:
        common = ["--personas", personas_file, "--limit", 12, "--backend", "openai", "--model", "m", "-q"]
        repeated = run_cli("profiles", *common, "--out", tmp_path / "one", "--base-url", a, "--base-url", b)
        config = tmp_path / "fleet.yaml"
        config.write_text(f"backend:\n  base_url: [{a}, {c}]\n")
        from_yaml = run_cli("profiles", *common, "--out", tmp_path / "two", "--config", config)
    assert repeated[0] == 0 and from_yaml[0] == 0, (repeated[2], from_yaml[2])
    assert first.requests > 0 and second.requests > 0 and third.requests > 0
    assert BackendConfig(base_url=f"{a}, {b}").base_url == [a, b]
    with pytest.raises(ValueError, match="http"):
        BackendConfig(base_url="localhost:8000/v1")
