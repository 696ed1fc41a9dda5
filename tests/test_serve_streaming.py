"""Real streaming through the backend seam: the openai backend passing an upstream SSE stream
through (real sockets), its failures, and the embedded model streaming through `serve` (slow)."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import pytest
from aiohttp import web

from opencharacter.backends import build_backend
from opencharacter.backends.fake import FakeBackend
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.serve.server import BackendResponder, Faults, ScriptedResponder, serve_in_thread

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"


def request(text: str = WORDS, max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], sampling=Sampling(max_tokens=max_tokens))


def stream_all(base_url: str, req: ChatRequest, on_event=None, **config):
    async def main():
        backend = build_backend(BackendConfig(backend="openai", base_url=base_url, model="m", **config))
        events = []
        try:
            async for event in backend.stream(req):
                if on_event is not None:
                    on_event(event)
                events.append(event)
            return events
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_the_openai_backend_passes_the_upstream_stream_through_as_it_comes():
    upstream = FakeBackend(BackendConfig(backend="fake", model="up", options={"token_delay": 0.05}))
    made_at_first_text = []

    def note(event):
        if event.text and not made_at_first_text:
            made_at_first_text.append(upstream.streamed)

    with serve_in_thread(BackendResponder(upstream)) as url:
        events = stream_all(url, request(), note)
    texts = [e.text for e in events if e.text]
    final = events[-1].final
    assert final is not None and final.text == "".join(texts) == f"[assistant] {WORDS}"
    assert len(texts) >= 10 and final.finish_reason == "stop" and final.completion_tokens == 13  # usage came along
    assert made_at_first_text[0] < len(texts) // 2  # the first piece arrived while the rest was being made


def test_a_server_that_ignores_stream_is_read_as_one_event():
    async def plain(payload):
        body = {"choices": [{"message": {"content": "all at once"}, "finish_reason": "stop"}], "usage": {}}
        return web.json_response(body)

    with serve_in_thread(plain) as url:
        events = stream_all(url, request())
    assert [e.text for e in events] == ["all at once"] and events[0].final.text == "all at once"


def test_a_failure_before_the_first_piece_is_resent_once_then_reported():
    once = ScriptedResponder(faults=Faults(server_errors=1))
    with serve_in_thread(once) as url:
        events = stream_all(url, request("hello"))
    assert events[-1].final.text == "echo: hello" and once.requests == 2
    twice = ScriptedResponder(faults=Faults(server_errors=2))
    with serve_in_thread(twice) as url, pytest.raises(BackendError, match="500"):
        stream_all(url, request("hello"))
    assert twice.requests == 2


@pytest.mark.parametrize(
    ("body", "expected", "sends"),
    [
        # Text already went out: only the caller may ask again (it has shown half an answer).
        (b'data: {"choices": [{"index": 0, "delta": {"content": "half"}}]}\n\n', "ended before the answer did", 1),
        # Nothing went out yet: re-sent once, as a failed call is.
        (b'data: {"error": {"message": "engine overloaded"}}\n\n', "failed mid-stream: engine overloaded", 2),
        (b"data: {not json\n\n", "not JSON", 2),
    ],
    ids=["cut-off", "error-event", "garbage"],
)
def test_a_broken_stream_is_a_retryable_error_never_a_short_answer(body, expected, sends):
    sent = []

    async def broken(payload):
        sent.append(payload)
        return web.Response(body=body, content_type="text/event-stream")

    with serve_in_thread(broken) as url, pytest.raises(BackendError, match=expected) as caught:
        stream_all(url, request())
    assert caught.value.retryable and len(sent) == sends
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}


def test_serve_streams_a_backend_through_sse_to_an_aiohttp_client():
    backend = FakeBackend(BackendConfig(backend="fake", model="m", options={"token_delay": 0.02}))
    payload = {
        "messages": [{"role": "user", "content": WORDS}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def read(url):
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/chat/completions", json=payload) as response,
        ):
            return [line async for line in response.content if line.strip()]

    with serve_in_thread(BackendResponder(backend)) as url:
        lines = asyncio.run(read(url))
    events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: {")]
    assert lines[-1].strip() == b"data: [DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["usage"]["completion_tokens"] == 13 and events[-2]["choices"][0]["finish_reason"] == "stop"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == f"[assistant] {WORDS}"


@pytest.mark.slow
def test_the_embedded_model_streams_its_first_token_before_the_last_is_generated():
    """transformers: tokens from inside the decode loop, through `serve`, over a real socket."""
    from opencharacter.backends.transformers_local import TransformersBackend

    backend = TransformersBackend(BackendConfig(batch_size=4))
    local = backend.local_model()
    generated = threading.Event()
    generate = local.generate

    def generate_and_note(*args, **kwargs):
        try:
            return generate(*args, **kwargs)
        finally:
            generated.set()

    local.generate = generate_and_note
    payload = {
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
    }
    whole = {**payload, "stream": False}

    async def read(url):
        pieces, done_at_first = [], None
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/chat/completions", json=payload) as response:
                async for line in response.content:
                    if not line.startswith(b"data: {"):
                        continue
                    event = json.loads(line[6:])
                    content = event["choices"][0]["delta"].get("content") if event["choices"] else None
                    if content:
                        if done_at_first is None:
                            done_at_first = generated.is_set()
                        pieces.append(content)
            generated.clear()
            async with session.post(f"{url}/chat/completions", json=whole) as response:
                answer = (await response.json())["choices"][0]["message"]["content"]
        return pieces, done_at_first, answer

    with serve_in_thread(BackendResponder(backend)) as url:
        pieces, done_at_first, answer = asyncio.run(read(url))
    assert done_at_first is False  # the first piece was read while the decode loop was still running
    assert len(pieces) > 10 and "".join(pieces) == answer  # streamed = the same greedy answer, whole


@pytest.mark.slow
def test_chat_streams_the_local_model_through_the_seam_in_pieces():
    """`chat` has no decoding of its own any more: the transformers backend's `stream` feeds it."""
    from opencharacter.chat.session import ChatModel

    model = ChatModel(BackendConfig())
    try:
        assert model.streams
        messages = [ChatMessage(role="user", content="Describe the sea in three sentences.")]
        greedy = Sampling(temperature=0.0, max_tokens=40)
        pieces = list(model.stream(messages, greedy))
        whole = asyncio.run(build_backend(BackendConfig()).complete(ChatRequest(messages=messages, sampling=greedy)))
    finally:
        model.close()
    assert len(pieces) > 10 and "".join(pieces) == whole.text
