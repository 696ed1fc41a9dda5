"""The OpenAI chat-completions request as real clients send it, validated, and the shapes we answer in.

`opencharacter serve` is used by the official `openai` client, LangChain and friends: they send
`developer` messages, `name`, content as a list of parts, `max_completion_tokens`, `stream=True`.
Everything we can honour is turned into a ChatRequest; everything we cannot is a 400 with an
OpenAI-shaped error body naming the parameter, never a 500 with a traceback.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling


class RequestRejected(Exception):
    """A request we answer with HTTP 400 (or another 4xx) and an OpenAI-shaped error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message, param, status, code)
        self.message, self.param, self.status, self.code = message, param, status, code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, "invalid_request_error", self.param, self.code)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] | None = None
    name: str | None = None

    def to_chat_message(self, index: int) -> ChatMessage:
        if self.content is None:
            raise RequestRejected("message content is required (tool calls are not supported)", f"messages[{index}]")
        if isinstance(self.content, str):
            text = self.content
        else:
            texts = []
            for part in self.content:
                if part.type != "text" or part.text is None:
                    raise RequestRejected(
                        f"content part type {part.type!r} is not supported (text only)", f"messages[{index}].content"
                    )
                texts.append(part.text)
            text = "\n".join(texts)
        # `developer` is the newer name OpenAI uses for `system`.
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=text)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The parameters we honour; unknown ones are ignored (as most OpenAI-compatible servers do)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1)
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    tools: list[Any] | None = None
    logprobs: bool | None = None

    @field_validator("stop")
    @classmethod
    def _no_stop(cls, value: Any) -> Any:
        if value:
            raise ValueError("stop sequences are not supported by this server")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: Any) -> Any:
        if value:
            raise ValueError("tools are not supported by this server")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any) -> Any:
        if value:
            raise ValueError("logprobs are not supported by this server")
        return value

    def schema(self) -> dict[str, Any] | None:
        response_format = self.response_format or {}
        kind = response_format.get("type", "text")
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise RequestRejected("response_format.json_schema.schema must be an object", "response_format")
            return schema
        if kind == "json_object":
            schema = response_format.get("schema")
            return schema if isinstance(schema, dict) else {"type": "object"}
        if kind != "text":
            raise RequestRejected(f"response_format type {kind!r} is not supported", "response_format")
        return None

    def to_chat_request(self) -> ChatRequest:
        sampling: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        # max_completion_tokens is the newer name; when both are sent it wins, as in OpenAI's API.
        sampling["max_tokens"] = self.max_completion_tokens or self.max_tokens
        return ChatRequest(
            messages=[m.to_chat_message(i) for i, m in enumerate(self.messages)],
            sampling=Sampling(**{k: v for k, v in sampling.items() if v is not None}),
            response_schema=self.schema(),
        )


def parse_request(payload: Any) -> ChatCompletionRequest:
    """The validated request, or RequestRejected naming the first wrong parameter."""
    if not isinstance(payload, dict):
        raise RequestRejected("the request body must be a JSON object")
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"]) or None
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"] and error["loc"][0] == "n":
            message = "only n=1 is supported"
        raise RequestRejected(f"{param}: {message}" if param else message, param) from None


_ids = itertools.count(1)


def completion_body(completion: Completion, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage(completion),
    }


def usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def stream_events(completion: Completion, model: str, include_usage: bool) -> list[bytes]:
    """The server-sent events of a streamed answer: a role chunk, the text in word-sized pieces,
    a finish chunk, an optional usage chunk, then `data: [DONE]`.

    Backends return whole answers, so the pieces arrive together; clients that stream get the
    protocol they expect (the official client returned zero chunks before).
    """
    base = {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    pieces = [piece for piece in _pieces(completion.text) if piece]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, completion.finish_reason))
    if include_usage:
        body = {**base, "choices": [], "usage": usage(completion)}
        events.append(b"data: " + json.dumps(body).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _pieces(text: str, size: int = 16) -> list[str]:
    words = text.split(" ")
    return [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]
