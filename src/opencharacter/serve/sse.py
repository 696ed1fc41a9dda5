"""Server-sent events in the shape OpenAI's streaming clients read: `chat.completion.chunk` objects,
a role chunk first, the text in pieces, a finish chunk, an optional usage chunk, `data: [DONE]`.

`ChunkWriter` frames the events of one answer; `whole_answer_pieces` cuts an answer that was made
whole (the test harness's scripted responders) into pieces, so clients get the protocol they expect.
"""

from __future__ import annotations

import json
import time
from typing import Any

from opencharacter.records import Completion
from opencharacter.serve.api import completion_id, error_body, usage

DONE = b"data: [DONE]\n\n"


def event(body: dict[str, Any]) -> bytes:
    # ensure_ascii: any text the model made is sent as valid JSON, whatever its characters.
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class ChunkWriter:
    def __init__(self, model: str) -> None:
        self._base = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return event({**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def role(self) -> bytes:
        return self.chunk({"role": "assistant", "content": ""})

    def text(self, piece: str) -> bytes:
        return self.chunk({"content": piece})

    def finish(self, completion: Completion, include_usage: bool) -> bytes:
        out = self.chunk({}, completion.finish_reason)
        if include_usage:
            out += event({**self._base, "choices": [], "usage": usage(completion)})
        return out + DONE

    @staticmethod
    def failure(message: str) -> bytes:
        """A failure after the answer began: the headers (200) are gone, so it is said in-stream."""
        return event(error_body(message, "server_error")) + DONE


def whole_answer_pieces(text: str, size: int = 16) -> list[str]:
    words = text.split(" ")
    starts = range(0, len(words), size)
    pieces = [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in starts]
    return [piece for piece in pieces if piece]
