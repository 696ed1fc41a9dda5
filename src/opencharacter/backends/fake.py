"""A deterministic in-process backend for unit and component tests (select it with `--backend fake`).

It answers from the request alone, so reruns are reproducible: schema requests get valid JSON
built from the schema, text requests echo the last user message tagged with the character name, judge
prompts get a deterministic 'Score: N'.
Options (`BackendConfig.options`) inject faults: `fail_every` (non-retryable error on every
n-th distinct request), `invalid_json_first` (invalid JSON on first tries), `delay` (seconds).
`stream` yields the answer word by word, `token_delay` seconds apart (a slow model, for streaming
tests); `context_window` (default 8192, in words) is what `token_budget` reports.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from opencharacter.backends.base import Backend, Capabilities, StreamEvent, TokenBudget
from opencharacter.errors import BackendError
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.records import ChatRequest, Completion

_NAMES = [
    "Ada Quill",
    "Bram Oduya",
    "Chen Li",
    "Dara Voss",
    "Eli Marsh",
    "Fatima Noor",
    "Gus Hale",
    "Hana Sato",
]


def fake_value(schema: dict[str, Any], seed: str, root: dict[str, Any]) -> Any:
    """A value that satisfies the (simple) JSON schemas this package sends."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return fake_value(root.get("$defs", {})[name], seed, root)
    kind = schema.get("type")
    if kind == "object":
        return {key: fake_value(sub, f"{seed}.{key}", root) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = schema.get("minItems", 1)
        return [fake_value(schema.get("items", {}), f"{seed}.{i}", root) for i in range(count)]
    if kind == "integer":
        low = schema.get("minimum", 20)
        high = schema.get("maximum", low + 59)
        return low + int(content_hash(seed), 16) % (high - low + 1)
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    index = int(content_hash(seed), 16)
    if seed.endswith(".name"):
        return _NAMES[index % len(_NAMES)]
    text = f"fake {seed.rsplit('.', 1)[-1]} {index % 1000}"
    while len(text) < schema.get("minLength", 0):
        text += " and more"
    return text[: schema.get("maxLength", len(text))]


class FakeBackend(Backend):
    capabilities = Capabilities(structured_output=True, local=True, stream=True)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.calls = 0
        self.streamed = 0
        """Pieces `stream` has handed out so far (tests read it to see text left before the end)."""
        self._seen: dict[str, int] = {}

    @property
    def model_id(self) -> str:
        return f"fake:{self.config.model}"

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        options = self.config.options
        if options.get("delay"):
            await asyncio.sleep(float(options["delay"]))
        # Without the per-call seed, so a retry of the same prompt counts as the same request.
        key = content_hash(canonical_json(request.model_dump(exclude={"sampling": {"seed"}})))
        self._seen[key] = self._seen.get(key, 0) + 1
        every = int(options.get("fail_every", 0))
        if every and int(key, 16) % every == 0:
            raise BackendError("injected failure", status=400, retryable=False)
        if request.response_schema is not None:
            if self._seen[key] <= int(options.get("invalid_json_first", 0)):
                text = '{"truncated": '
            else:
                text = canonical_json(fake_value(request.response_schema, key, request.response_schema))
        elif '"Score: N"' in request.messages[0].content:  # a judge prompt: a deterministic verdict
            text = f"Fake judgement. Score: {int(key, 16) % 5 + 1}"
        else:
            system = request.messages[0].content
            name = re.search(r"^Name: (.+)$", system, re.MULTILINE)
            speaker = name.group(1) if name else "assistant"
            text = f"[{speaker}] {request.messages[-1].content[:80]}"
            if options.get("sample_system_words") and request.sampling.seed is not None:
                text += " " + _system_words(system, int(options["sample_system_words"]), request.sampling.seed)
        words = sum(len(m.content.split()) for m in request.messages)
        return Completion(text=text, prompt_tokens=words, completion_tokens=len(text.split()))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        completion = await self.complete(request)
        delay = float(self.config.options.get("token_delay", 0))
        for piece in re.findall(r"\S+\s*|\s+", completion.text):
            yield StreamEvent(piece)
            self.streamed += 1
            if delay:
                await asyncio.sleep(delay)
        yield StreamEvent("", completion)

    def token_budget(self, request: ChatRequest) -> TokenBudget:
        words = sum(len(m.content.split()) for m in request.messages)
        return TokenBudget(words, int(self.config.options.get("context_window", 8192)))


def _system_words(system: str, count: int, seed: int) -> str:
    """`count` words of the system prompt, drawn by the call's seed: candidates of one answer then
    differ in how much of the profile they echo, as a real model's samples do (option
    `sample_system_words`; a seeded choice, so a rerun gives the same text)."""
    words = re.findall(r"[A-Za-z]{4,}", system)
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(count)) if words else ""
