"""Reading an OpenAI-compatible server's streamed answer (`stream: true`, server-sent events).

The openai backend passes the upstream stream through: each `data:` event's `choices[0].delta.content`
is yielded as it arrives, and the last event carries the whole completion (text, finish reason,
usage when the server sends it, as `stream_options.include_usage` asks). A server that ignores
`stream` and answers one JSON body is read as one event. A stream that breaks off before its
finish (no `finish_reason`, no `[DONE]`) is a retryable error, never a silently short answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from opencharacter.backends.base import StreamEvent
from opencharacter.backends.http_errors import server_message
from opencharacter.backends.http_payload import parse_response
from opencharacter.errors import BackendError
from opencharacter.records import Completion

_MAX_EVENT_BYTES = 4 * 1024 * 1024
"""One event larger than this is not a token delta: the server is broken (or hostile)."""


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The `data` of each server-sent event, in order (multi-line data joined by newlines)."""
    buffer = b""
    data: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > _MAX_EVENT_BYTES:
            raise BackendError("a streamed event is larger than 4 MiB", status=200, retryable=True)
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            # comments (": keep-alive"), `event:`, `id:` and `retry:` lines carry no text
    if buffer.strip().startswith(b"data:"):
        data.append(buffer.strip()[5:].decode("utf-8", "replace").removeprefix(" "))
    if data:
        yield "\n".join(data)


async def read_chat_stream(url: str, content_type: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[StreamEvent]:
    """StreamEvents from a 200 answer's body; raises BackendError (retryable) on a broken stream."""
    if "text/event-stream" not in content_type:
        body = b"".join([chunk async for chunk in chunks])
        try:
            completion = parse_response(json.loads(body))
        except (ValueError, BackendError):
            raise BackendError(f"{url} answered a malformed stream", status=200, retryable=True) from None
        yield StreamEvent(completion.text, completion)
        return
    pieces: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] = {}
    done = False
    async for data in sse_data(chunks):
        if data.strip() == "[DONE]":
            done = True
            break
        try:
            event = json.loads(data)
        except ValueError:
            raise BackendError(f"{url} streamed an event that is not JSON", status=200, retryable=True) from None
        if not isinstance(event, dict):
            raise BackendError(f"{url} streamed an event that is not an object", status=200, retryable=True)
        if "error" in event:
            said = server_message(json.dumps(event).encode())
            raise BackendError(f"{url} failed mid-stream: {said}", status=200, retryable=True)
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                pieces.append(text)
                yield StreamEvent(text)
            finish = choice.get("finish_reason") or finish
    if finish is None and not done:
        raise BackendError(f"{url}: the stream ended before the answer did", status=200, retryable=True)
    completion = Completion(
        text="".join(pieces),
        finish_reason=str(finish or "stop"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
    yield StreamEvent("", completion)
