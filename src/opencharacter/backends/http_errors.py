"""Turning HTTP answers into the errors the engine and executor act on, with the API key masked.

Three outcomes: fatal (no retry can fix it: 401/403/404, nothing listening), retryable, or final for
this item (other 4xx). Messages are one line a person can act on. A server may echo the key (in an
"invalid key" message, or a debug dump of the request); messages land in failures.jsonl and the
store, so anything that looks like the configured key is masked before an error is raised.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
OVERLOAD_STATUS = {429, 503}
"""Answers that mean "too much at once": the limiter absorbs them instead of failing the try."""

_MASK = "***"


class KeyMask:
    """Replaces the configured key, and tokens sharing a long prefix or suffix with it, by ***."""

    def __init__(self, key: str | None) -> None:
        self._pattern: re.Pattern[str] | None = None
        if key and len(key) >= 6:
            parts = [re.escape(key)]
            if len(key) >= 16:  # servers often echo a shortened key: sk-abcd...wxyz
                parts += [re.escape(key[:8]) + r"\S*", r"\S*" + re.escape(key[-8:])]
            self._pattern = re.compile("|".join(parts))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(_MASK, text) if self._pattern is not None else text


def status_phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def server_message(body: bytes, limit: int = 300) -> str:
    """The `error.message` of an OpenAI-shaped error body, else the start of the body, on one line."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
        elif isinstance(data.get("detail"), str):
            text = data["detail"]
    return " ".join(text.split())[:limit]


def fatal_message(
    status: int,
    base_url: str,
    chat_url: str,
    model: str,
    key_env: str,
    has_key: bool,
    said: str,
    withheld: str | None = None,
) -> str:
    """The one line for an answer no retry can fix (401, 403, 404). `withheld`: why a key that is
    set was not sent to this server (the key-routing rule), and how to send it."""
    head = f"{base_url} answered {status_phrase(status)}"
    if status == 401:
        if withheld:
            fix = f"no API key was sent: {withheld}"
        else:
            fix = f"check ${key_env}" if has_key else f"no API key was sent: set ${key_env}"
        return f"{head}: {fix}" + (f" (server said: {said})" if said else "")
    if status == 403:
        return f"{head}: the key in ${key_env} may not use model {model!r}" + (
            f" (server said: {said})" if said else ""
        )
    if "model" in said.lower():
        return f"{head}: no model {model!r} there (server said: {said}); check --model"
    return (
        f"{head} for {chat_url}: no such endpoint; --base-url should end where /chat/completions is served (e.g. …/v1)"
    )
