"""The OpenAI chat-completions request as real clients send it, validated, and the shapes we answer in.

`opencharacter serve` is used by the official `openai` client, SillyTavern, LangChain and friends:
they send `developer` messages, `name`, content as a list of parts, `max_completion_tokens`,
`stream=True`. Everything we can honour is turned into a ChatRequest; everything we cannot, and
everything malformed, is a 400 with an OpenAI-shaped error body naming the parameter, never a 500.

Types are strict, as OpenAI's are: `stream: "yes"` or `temperature: "0.5"` is a 400, not a guess.
The body is decoded and checked here in one pass before any model sees it (`decode_body`): too
deep, a lone surrogate, too many messages or characters are refused up front. All of this is
CPU work on untrusted input, so the server runs it in a worker thread, off the event loop.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling

INT64 = 2**63
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RequestRejected(Exception):
    """A request we answer with HTTP 400 (or another 4xx) and an OpenAI-shaped error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message, param, status, code)
        self.message, self.param, self.status, self.code = message, param, status, code

    def body(self) -> dict[str, Any]:
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        return error_body(self.message, kind, self.param, self.code)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Limits(BaseModel):
    """What one request may hold (from ServeConfig; the test harness uses the defaults)."""

    max_messages: int = 2048
    max_characters: int = 2_000_000
    max_json_depth: int = 64


# -- decoding the body ------------------------------------------------------------------------


def decode_body(body: bytes, limits: Limits) -> dict[str, Any]:
    """The JSON object of a request body, checked for depth, lone surrogates and size caps."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise RequestRejected(f"the body nests deeper than {limits.max_json_depth} levels") from None
    except ValueError as exc:  # includes UnicodeDecodeError: bytes that are not UTF-8
        raise RequestRejected(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestRejected("the body must be a JSON object")
    messages = payload.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise RequestRejected(f"at most {limits.max_messages} messages per request, got {len(messages)}", "messages")
    _check_structure(payload, limits.max_json_depth)
    return payload


def _check_structure(payload: dict[str, Any], max_depth: int) -> None:
    """Depth and lone surrogates, iteratively (a recursive walk is what 100k-deep JSON breaks)."""
    stack: list[tuple[Any, str, int]] = [(payload, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise RequestRejected(f"{path or 'the body'}: contains a lone surrogate (not valid Unicode)", path)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= max_depth:
            top = re.split(r"[.\[]", path, maxsplit=1)[0] or None  # the parameter, not 64 levels of it
            raise RequestRejected(f"{top or 'the body'}: nested deeper than {max_depth} levels", top)
        if isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise RequestRejected(f"{path or 'the body'}: a key contains a lone surrogate", path or None)
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        else:
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))


# -- the request ------------------------------------------------------------------------------


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
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


_MESSAGE = TypeAdapter(_Message)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class _JsonSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class _ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    """llama.cpp's form: `{"type": "json_object", "schema": {...}}`."""

    @model_validator(mode="after")
    def _schema_given(self) -> _ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is json_schema")
        return self


class ChatCompletionRequest(BaseModel):
    """The parameters we honour; unknown ones are ignored (as most OpenAI-compatible servers do)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    messages: list[Any] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    response_format: _ResponseFormat | None = None
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

    @property
    def requested_max_tokens(self) -> int | None:
        # max_completion_tokens is the newer name; when both are sent it wins, as in OpenAI's API.
        return self.max_completion_tokens or self.max_tokens

    def schema(self) -> dict[str, Any] | None:
        response_format = self.response_format
        if response_format is None or response_format.type == "text":
            return None
        if response_format.json_schema is not None:  # type json_schema (the model validator insists)
            return response_format.json_schema.schema_
        return response_format.schema_ or {"type": "object"}

    def to_chat_request(self, limits: Limits | None = None) -> ChatRequest:
        limits = limits or Limits()
        messages = [_message(raw, index).to_chat_message(index) for index, raw in enumerate(self.messages)]
        characters = sum(len(m.content) for m in messages)
        if characters > limits.max_characters:
            raise RequestRejected(
                f"the messages hold {characters} characters, more than this server's {limits.max_characters}",
                "messages",
            )
        sampling: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        sampling["max_tokens"] = self.requested_max_tokens
        schema_name = "response"
        if self.response_format is not None and self.response_format.json_schema is not None:
            schema_name = self.response_format.json_schema.name
        return ChatRequest(
            messages=messages,
            sampling=Sampling(**{k: v for k, v in sampling.items() if v is not None}),
            response_schema=self.schema(),
            schema_name=schema_name,
        )


def _message(raw: Any, index: int) -> _Message:
    """One message, validated on its own: a long history is checked in many short steps (which
    let the event loop's thread run between them), and an error names the message it is in."""
    try:
        return _MESSAGE.validate_python(raw)
    except ValidationError as exc:
        raise _rejection(exc, ("messages", index)) from None


def _rejection(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> RequestRejected:
    error = exc.errors()[0]
    loc = (*prefix, *error["loc"])
    param = _param(loc) or None
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[0] == "n":
        message = "only n=1 is supported"
    elif loc and loc[0] == "seed" and error["type"] in ("greater_than_equal", "less_than"):
        message = "seed must be a 64-bit signed integer"
    return RequestRejected(f"{param}: {message}" if param else message, param)


def _param(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[_Part]", "function-after[_schema_given(), _ResponseFormat]"):
            continue  # pydantic's names for union members and validators, not parameters
        else:
            text += f".{part}" if text else str(part)
    return text.replace("schema_", "schema")


def parse_request(payload: Any, limits: Limits | None = None) -> ChatCompletionRequest:
    """The validated request, or RequestRejected naming the first wrong parameter."""
    if not isinstance(payload, dict):
        raise RequestRejected("the request body must be a JSON object")
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise _rejection(exc) from None


def read_request(body: bytes, limits: Limits) -> tuple[dict[str, Any], ChatCompletionRequest, ChatRequest]:
    """Everything the server does to a body before a model sees it (run in a worker thread)."""
    payload = decode_body(body, limits)
    parsed = parse_request(payload, limits)
    return payload, parsed, parsed.to_chat_request(limits)


# -- answers ----------------------------------------------------------------------------------

_ids = itertools.count(1)


def completion_id() -> str:
    return f"chatcmpl-{next(_ids)}"


def completion_body(completion: Completion, model: str) -> dict[str, Any]:
    return {
        "id": completion_id(),
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
