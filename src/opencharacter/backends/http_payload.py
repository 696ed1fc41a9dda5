"""Request bodies and response parsing for POST /chat/completions, including structured-output fallback.

Servers differ in which `response_format` they take. OpenAI and vLLM take `json_schema`;
llama-cpp-python rejects it (HTTP 500, `Input should be 'text' or 'json_object'`) but takes
`json_object` with a `schema`; some take neither. The backend starts with the strictest form and
steps down per endpoint when a server rejects it; the stage validates the output in every case.
"""

from __future__ import annotations

import json
from typing import Any

from opencharacter.errors import BackendError
from opencharacter.records import ChatRequest, Completion

STRUCTURED_MODES = ("json_schema", "json_object", "prompt")
"""Strictest first. `prompt`: no response_format; the schema is asked for in the prompt."""

# Statuses servers use to reject a request shape: 400/422 (most), 500 (llama-cpp-python's
# catch-all handler), 501 (not implemented).
_REJECTION_STATUS = {400, 422, 500, 501}
_REJECTION_MARKERS = (
    "json_schema",
    "response_format",
    "'text' or 'json_object'",
    '"text" or "json_object"',
    "json_object",
    "structured output",
    "guided_json",
)


def build_payload(request: ChatRequest, model: str, structured: str = "json_schema") -> dict[str, Any]:
    """The JSON body of POST /chat/completions for one request, in the endpoint's structured form."""
    sampling = request.sampling
    messages = [m.model_dump() for m in request.messages]
    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.top_p is None:  # the server's default
        del payload["top_p"]
    if sampling.seed is not None:
        payload["seed"] = sampling.seed
    if sampling.extra_body:
        payload.update(sampling.body_fields())
    schema = request.response_schema
    if schema is None:
        return payload
    if structured == "json_schema":
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": schema},
        }
    elif structured == "json_object":
        payload["response_format"] = {"type": "json_object", "schema": schema}
    else:
        hint = "\n\nReply with one JSON object and nothing else. It must follow this JSON schema:\n" + json.dumps(
            schema, separators=(",", ":")
        )
        last = dict(messages[-1])
        last["content"] = last["content"] + hint
        payload["messages"] = [*messages[:-1], last]
    return payload


def next_structured_mode(current: str, status: int, body: str) -> str | None:
    """The next weaker form if this answer rejects the current one, else None."""
    if current == "prompt" or status not in _REJECTION_STATUS:
        return None
    lowered = body.lower()
    if not any(marker in lowered for marker in _REJECTION_MARKERS):
        return None
    return STRUCTURED_MODES[STRUCTURED_MODES.index(current) + 1]


def parse_response(data: Any) -> Completion:
    """A Completion from a chat.completion body; a body without text is retryable garbage."""
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BackendError("response has no choices[0].message.content", status=200, retryable=True) from None
    if not isinstance(text, str):
        raise BackendError("response content is not a string", status=200, retryable=True)
    usage = data.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=str(choice.get("finish_reason") or "stop"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def estimated_tokens(payload: dict[str, Any]) -> int:
    """What a hosted API counts against tokens-per-minute before the call: prompt + max_tokens."""
    chars = sum(len(m.get("content") or "") for m in payload["messages"])
    return chars // 4 + int(payload.get("max_tokens") or 0)
