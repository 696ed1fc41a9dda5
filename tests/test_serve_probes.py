"""Every probe of issue #21's table against `serve`'s server, over a real socket on 127.0.0.1.

The server is wired as `opencharacter serve` wires it (key, accepted model names, admission
bound) around the fake backend; `test_serve_cli.py` starts the real command.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import aiohttp
import pytest

from opencharacter.backends.fake import FakeBackend
from opencharacter.config import BackendConfig
from opencharacter.serve.server import BackendResponder, serve_in_thread
from opencharacter.serve.settings import ServeConfig

KEY = "sk-serve-test-0123456789"
HELLO = {"model": "fake:m", "messages": [{"role": "user", "content": "Hello there"}]}
ORIGIN = "http://localhost:3000"


@contextmanager
def serving(key: str | None = KEY, active: int = 4, waiting: int = 16, **config):
    backend = FakeBackend(BackendConfig(backend="fake", model="m", options=config.pop("options", {})))
    settings = ServeConfig(allowed_origins=[ORIGIN], allowed_hosts=["chat.lan"], **config)
    with serve_in_thread(
        BackendResponder(backend),
        model_name="fake:m",
        config=settings,
        key=key,
        model_names=["fake:m", "m"],
        listed=["fake:m"],
        admission_limits=(active, waiting),
    ) as url:
        yield url, backend


def call(url, body=None, *, path="/v1/chat/completions", method="POST", key=KEY, headers=None, raw=None):
    """(status, headers, parsed body) of one request, with full control of every header."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    sent = {"Content-Type": "application/json"} if method == "POST" else {}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    sent.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={k: v for k, v in sent.items() if v is not None})
    response = connection.getresponse()
    text = response.read()
    connection.close()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return response.status, dict(response.headers), parsed


def error(body):
    return body["error"]


# -- no key, any Origin, a foreign Host, text/plain -------------------------------------------------


def test_the_key_is_required_and_compared_exactly():
    with serving() as (url, _):
        assert call(url, HELLO, key=None)[0] == 401
        status, headers, body = call(url, HELLO, key=KEY + "x")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and error(body)["code"] == "invalid_api_key"
        assert call(url, HELLO, key=None, headers={"Authorization": f"Basic {KEY}"})[0] == 401
        assert call(url, HELLO)[0] == 200
        assert call(url, path="/v1/models", method="GET", key=None)[0] == 401
        status, _, models = call(url, path="/v1/models", method="GET")
        assert status == 200 and [m["id"] for m in models["data"]] == ["fake:m"]
        assert call(url, path="/health", method="GET", key=None)[:3:2] == (200, {"status": "ok"})


def test_a_foreign_origin_is_refused_and_a_listed_one_gets_cors_answers():
    with serving() as (url, _):
        status, _, body = call(url, HELLO, headers={"Origin": "https://evil.example"})
        assert status == 403 and error(body)["code"] == "origin_not_allowed"
        assert call(url, HELLO, headers={"Origin": "null"})[0] == 403
        status, headers, _ = call(url, HELLO, headers={"Origin": ORIGIN})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
        # The browser's preflight: no key on it, the answer says what the real request may carry.
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        status, headers, _ = call(url, method="OPTIONS", key=None, headers=preflight)
        assert status == 204 and headers["Access-Control-Allow-Origin"] == ORIGIN
        assert (
            "Authorization" in headers["Access-Control-Allow-Headers"]
            and "POST" in headers["Access-Control-Allow-Methods"]
        )
        foreign = {**preflight, "Origin": "https://evil.example"}
        assert call(url, method="OPTIONS", key=None, headers=foreign)[0] == 403
        # A refused key still carries the CORS answer, so the page can show the 401.
        status, headers, _ = call(url, HELLO, key="wrong", headers={"Origin": ORIGIN})
        assert status == 401 and headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_rebound_host_name_is_refused_unless_listed():
    with serving() as (url, _):
        status, _, body = call(url, HELLO, headers={"Host": "attacker.example:8000"})
        assert status == 403 and error(body)["code"] == "host_not_allowed"
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "192.168.1.20:8000", "chat.lan:8000"):
            assert call(url, HELLO, headers={"Host": host})[0] == 200, host


def test_a_body_that_is_not_json_is_415_even_with_the_key():
    with serving() as (url, _):
        status, _, body = call(url, raw=json.dumps(HELLO).encode(), headers={"Content-Type": "text/plain"})
        assert status == 415 and "application/json" in error(body)["message"]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert call(url, raw=b"a=b", headers=form)[0] == 415
        assert call(url, HELLO, headers={"Content-Type": "application/json; charset=utf-8"})[0] == 200


def test_without_a_key_only_loopback_clients_reach_it_and_still_no_foreign_page():
    with serving(key=None) as (url, _):
        assert call(url, HELLO, key=None)[0] == 200
        assert call(url, HELLO, key=None, headers={"Origin": "https://evil.example"})[0] == 403
        assert call(url, raw=b"{}", key=None, headers={"Content-Type": "text/plain"})[0] == 415


# -- max_tokens 10^12, seed 10^29 ----------------------------------------------------------------------


def test_max_tokens_past_the_context_is_a_400_in_vllms_words_and_seed_is_range_checked():
    with serving(options={"context_window": 100}) as (url, _):
        status, _, body = call(url, {**HELLO, "max_tokens": 10**12})
        assert status == 400 and error(body)["param"] == "max_tokens"
        assert (
            "maximum context length is 100 tokens" in error(body)["message"]
            and "2 in the messages" in error(body)["message"]
        )
        assert call(url, {**HELLO, "max_tokens": 98})[0] == 200  # 2 + 98 fits exactly
        assert call(url, {**HELLO, "max_tokens": 99})[0] == 400
        long = {"model": "m", "messages": [{"role": "user", "content": "word " * 150}]}
        status, _, body = call(url, long)
        assert status == 400 and error(body)["param"] == "messages"
        for seed in (10**29, -(2**63) - 1, 2**63, 1.5, "7", True):
            status, _, body = call(url, {**HELLO, "seed": seed})
            assert status == 400 and error(body)["param"] == "seed", seed
        assert call(url, {**HELLO, "seed": 2**63 - 1})[0] == 200 and call(url, {**HELLO, "seed": -1})[0] == 200


# -- one 17 MB body, then a tiny request ------------------------------------------------------------


def _big_then_tiny(url, big: bytes) -> tuple[tuple, list[str]]:
    """Send the big body, then a tiny request while it is being read; return the big outcome and the order
    in which the two answers came back (an order, not a time: no timing threshold in tests)."""
    results: list = []
    finished: list[str] = []

    def send_big():
        try:
            results.append(call(url, raw=big))
        except OSError as exc:  # the server may hang up on an oversized upload
            results.append((type(exc).__name__, None, None))
        finished.append("big")

    sender = threading.Thread(target=send_big)
    sender.start()
    time.sleep(1.0)
    status, _, _ = call(url, HELLO)
    finished.append("tiny")
    sender.join(60)
    assert status == 200
    return results[0], finished


@pytest.mark.parametrize("limits", ["default", "raised"])
def test_a_17_mb_body_does_not_stall_a_tiny_request(limits):
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}] * 500_000}).encode()
    assert len(big) > 17_000_000
    raised = {"max_body": "32MiB", "max_messages": 10**6, "max_characters": 10**8}
    with serving(**(raised if limits == "raised" else {})) as (url, _):
        outcome, finished = _big_then_tiny(url, big)
    if limits == "default":
        assert outcome[0] == 413  # refused before it is read
    else:
        # Parsed and validated in a worker thread (seconds of CPU), then refused: it cannot fit. The tiny
        # request sent meanwhile is answered first: parsing does not hold the event loop (the probe
        # waited 12.9-14.3 s behind it; bench/streaming.py-style timings are measured outside the tests).
        assert outcome[0] == 400 and error(outcome[2])["param"] == "messages"
        assert finished == ["tiny", "big"]


# -- 1,000 concurrent requests ------------------------------------------------------------------------


def test_a_thousand_concurrent_requests_get_429_with_retry_after_beyond_the_bound():
    async def flood(url):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:

            async def one():
                async with session.post(f"{url}/chat/completions", json=HELLO) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")

            answers = await asyncio.gather(*(one() for _ in range(1000)))
            async with session.get(url.removesuffix("/v1") + "/health") as health:
                return answers, health.status

    with serving(active=4, waiting=16, options={"delay": 0.2}) as (url, backend):
        answers, health = asyncio.run(flood(url))
    statuses = [status for status, _ in answers]
    assert set(statuses) == {200, 429} and statuses.count(200) >= 20
    assert all(retry == "1" for status, retry in answers if status == 429)
    assert backend.calls == statuses.count(200)  # refused requests never reached the backend
    assert health == 200


# -- json_schema: 5, a lone surrogate, 100k-deep JSON ------------------------------------------------


def formatted(response_format) -> str:
    return json.dumps({**HELLO, "response_format": response_format})


def nested(key: str, depth: int) -> str:
    return json.dumps(HELLO)[:-1] + f', "{key}": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (formatted({"type": "json_schema", "json_schema": 5}), "response_format.json_schema"),
        (formatted({"type": "json_schema"}), "response_format"),
        (formatted({"type": "yaml"}), "response_format.type"),
        (formatted({"type": "json_schema", "json_schema": {"schema": []}}), "response_format.json_schema.schema"),
        ('{"model": "m", "messages": [{"role": "user", "content": "bad \\ud800 here"}]}', "messages[0].content"),
        (nested("x", 100_000), None),
        (nested("deep", 70), "deep"),
        (json.dumps({**HELLO, "stream": "yes"}), "stream"),
        (json.dumps({**HELLO, "stream": 1}), "stream"),
        (json.dumps({**HELLO, "temperature": "0.5"}), "temperature"),
        (json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
        (json.dumps({"model": "m", "messages": ["hi"]}), "messages[0]"),
        (json.dumps([HELLO]), None),
        (b"\xff\xfe not utf-8", None),
    ],
    ids=[
        "json_schema-5", "json_schema-missing", "unknown-format", "schema-not-object", "lone-surrogate",
        "100k-deep", "70-deep", "stream-string", "stream-int", "temperature-string", "content-int",
        "message-string", "body-array", "not-utf8",
    ],
)  # fmt: skip
def test_malformed_requests_are_400s_naming_the_parameter(raw, param):
    with serving() as (url, _):
        status, _, body = call(url, raw=raw if isinstance(raw, bytes) else raw.encode())
    assert status == 400, body
    assert error(body)["type"] == "invalid_request_error" and "Traceback" not in error(body)["message"]
    if param is not None:
        assert error(body)["param"] == param, error(body)


def test_a_valid_json_schema_request_is_answered_with_schema_valid_json():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    request = {**HELLO, "response_format": {"type": "json_schema", "json_schema": {"name": "who", "schema": schema}}}
    with serving() as (url, _):
        status, _, body = call(url, request)
    assert status == 200 and "name" in json.loads(body["choices"][0]["message"]["content"])


# -- an unknown model ------------------------------------------------------------------------------


def test_an_unknown_model_is_404_model_not_found():
    with serving() as (url, _):
        status, _, body = call(url, {**HELLO, "model": "gpt-9-does-not-exist"})
        assert status == 404 and error(body)["code"] == "model_not_found" and error(body)["param"] == "model"
        assert "gpt-9-does-not-exist" in error(body)["message"]
        assert call(url, {**HELLO, "model": "m"})[0] == 200  # the name it was started with
        no_model = {"messages": HELLO["messages"]}
        status, _, body = call(url, no_model)
        assert status == 200 and body["model"] == "fake:m"


# -- stream: true -------------------------------------------------------------------------------------


def test_the_first_streamed_token_arrives_before_the_last_is_generated():
    words = "one two three four five six seven eight nine ten eleven twelve"
    request = {**HELLO, "messages": [{"role": "user", "content": words}], "stream": True}
    with serving(options={"token_delay": 0.05}) as (url, backend):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        connection.request("POST", "/v1/chat/completions", body=json.dumps(request), headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        seen_at_first_text = None
        texts = []
        while True:
            line = response.readline().decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if text:
                if seen_at_first_text is None:
                    seen_at_first_text = backend.streamed
                texts.append(text)
        connection.close()
    total = len(texts)
    assert total >= 10 and "".join(texts) == f"[assistant] {words}"
    # When the client read the first piece, the backend had handed out only the first few.
    assert seen_at_first_text is not None and seen_at_first_text < total // 2, (seen_at_first_text, total)


def test_a_client_that_hangs_up_mid_stream_stops_the_generation():
    request = {**HELLO, "messages": [{"role": "user", "content": "word " * 60}], "stream": True}
    with serving(options={"token_delay": 0.05}) as (url, backend):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        connection.request("POST", "/v1/chat/completions", body=json.dumps(request), headers=headers)
        response = connection.getresponse()
        while "content" not in response.readline().decode():
            pass
        connection.close()  # hang up after the first piece
        time.sleep(1.0)
        stopped_at = backend.streamed
        time.sleep(0.5)
        assert backend.streamed == stopped_at < 40  # nothing more is made for nobody
        assert call(url, HELLO)[0] == 200  # and the server goes on
