"""`opencharacter serve`'s server against the official `openai` Python client (fake backend: fast)."""

from __future__ import annotations

import pytest

from opencharacter.backends.fake import FakeBackend
from opencharacter.config import BackendConfig
from opencharacter.serve.server import BackendResponder, serve_in_thread

openai = pytest.importorskip("openai")

SYSTEM = "You are Ada.\nName: Ada Quill"


@pytest.fixture(scope="module")
def client():
    backend = FakeBackend(BackendConfig(backend="fake"))
    with serve_in_thread(BackendResponder(backend)) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)


def test_developer_role_names_content_parts_and_max_completion_tokens(client):
    parts = [{"type": "text", "text": "Who"}, {"type": "text", "text": "are you?"}]
    answer = client.chat.completions.create(
        model="ada",
        messages=[{"role": "developer", "content": SYSTEM}, {"role": "user", "name": "bob", "content": parts}],
        max_completion_tokens=32,
    )
    assert answer.choices[0].message.content == "[Ada Quill] Who\nare you?"
    assert answer.model == "ada" and answer.usage.completion_tokens > 0


def test_streaming_yields_the_same_text_as_one_answer(client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me " + "more " * 40}]
    whole = client.chat.completions.create(model="ada", messages=messages).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="ada", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len(chunks) >= 4  # role, several pieces, finish, usage
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
        ({"stop": ["\n"]}, "stop"),
    ],
    ids=["n", "temperature", "max_tokens", "top_p", "no-messages", "tool-role", "image-part", "stop"],
)
def test_requests_we_cannot_honour_get_a_400_with_an_openai_error_body(client, extra, param):
    request = {"model": "ada", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["type"] == "invalid_request_error" and error["param"].startswith(param) and error["message"]


def test_a_backend_failure_is_a_500_with_an_error_body_not_a_traceback():
    failing = FakeBackend(BackendConfig(backend="fake", options={"fail_every": 1}))
    with serve_in_thread(BackendResponder(failing)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "server_error" and "injected failure" in caught.value.body["message"]
    assert "Traceback" not in str(caught.value.body)
