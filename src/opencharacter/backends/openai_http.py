"""OpenAI-compatible chat completions over aiohttp (OpenAI, vLLM serve, llama.cpp server, Ollama, …).

A bare aiohttp client, not the OpenAI SDK: measured here, the SDK costs ~2.7 ms CPU per request
against ~0.2 ms for aiohttp, which decides whether one client process keeps a fast server busy
(see bench/orchestration.py). One pooled session per backend; the engine owns retries.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp

from opencharacter.backends.base import Backend, Capabilities
from opencharacter.config import BackendConfig
from opencharacter.errors import BackendError, ConfigError
from opencharacter.records import ChatRequest, Completion

OPENAI_URL = "https://api.openai.com/v1"
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def build_payload(request: ChatRequest, model: str) -> dict[str, Any]:
    """The JSON body of POST /chat/completions for one request."""
    sampling = request.sampling
    payload: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump() for m in request.messages],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        payload["seed"] = sampling.seed
    if request.response_schema is not None:
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.response_schema},
        }
    return payload


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


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the engine's backoff applies instead


class OpenAIBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=False)

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.base_url = (config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        key = os.environ.get(config.api_key_env)
        if not key and self.base_url == OPENAI_URL:
            raise ConfigError(
                f"no API key: set the environment variable {config.api_key_env}, or point --base-url at your own server"
            )
        self._headers = {"Content-Type": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._url = f"{self.base_url}/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.config.concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            )
        return self._session

    async def complete(self, request: ChatRequest) -> Completion:
        payload = build_payload(request, self.config.model)
        try:
            async with self._client().post(self._url, json=payload) as response:
                body = await response.read()
                if response.status != 200:
                    raise BackendError(
                        f"{self._url} answered {response.status}: {body[:200].decode('utf-8', 'replace')}",
                        status=response.status,
                        retryable=response.status in _RETRYABLE_STATUS,
                        retry_after=_retry_after(response.headers),
                    )
        except asyncio.TimeoutError:
            raise BackendError(f"{self._url}: no answer within {self.config.timeout:g}s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self._url}: {type(exc).__name__}: {exc}", retryable=True) from None
        try:
            data = json.loads(body)
        except ValueError:
            raise BackendError(f"{self._url} answered malformed JSON", status=200, retryable=True) from None
        return parse_response(data)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
