"""A chat session: the character system prompt, the history, and a model that streams its answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

from opencharacter.backends import build_backend
from opencharacter.chat.characters import ChatCharacter
from opencharacter.config import BackendConfig
from opencharacter.models.loading import model_meta
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.records import ChatMessage, ChatRequest, Sampling


class ChatModel:
    """Any backend, through its one `stream` method: text appears as it is generated where the
    backend declares the `stream` capability (local models, OpenAI-compatible servers, vLLM), and
    as one whole answer elsewhere. Nothing here depends on which backend it is.

    The backend lives on one event loop for the whole chat, so an HTTP session or a loaded model
    is set up once, not per turn; `close()` releases it.
    """

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.backend = build_backend(config)
        self._loop = asyncio.new_event_loop()

    @property
    def streams(self) -> bool:
        return self.backend.capabilities.stream

    def stream(self, messages: list[ChatMessage], sampling: Sampling) -> Iterator[str]:
        events = self.backend.stream(ChatRequest(messages=messages, sampling=sampling))
        try:
            while True:
                try:
                    event = self._loop.run_until_complete(events.__anext__())
                except StopAsyncIteration:
                    return
                if event.text:
                    yield event.text
        finally:
            # Stopped early (Ctrl-C, an error while printing): the backend stops generating too.
            self._loop.run_until_complete(events.aclose())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self.backend.aclose())
        finally:
            self._loop.close()


class ChatSession:
    def __init__(self, model: ChatModel, character: ChatCharacter, sampling: Sampling, prompt_version: str | None):
        self.model, self.sampling, self.prompt_version = model, sampling, prompt_version
        self.history: list[ChatMessage] = []
        self.set_character(character)

    def set_character(self, character: ChatCharacter) -> None:
        self.character = character
        self.system = render_system_prompt(character.persona, character.character, self.prompt_version)
        self.history = []

    def reset(self) -> None:
        self.history = []

    def reply(self, text: str) -> Iterator[str]:
        """Stream the answer to `text`; the exchange joins the history only when the answer is complete,
        so a failed call leaves the history as it was and the user can simply ask again."""
        question = ChatMessage(role="user", content=text)
        messages = [ChatMessage(role="system", content=self.system), *self.history, question]
        pieces = []
        for piece in self.model.stream(messages, self.sampling):
            pieces.append(piece)
            yield piece
        self.history += [question, ChatMessage(role="assistant", content="".join(pieces).strip())]

    def save(self, path: Path) -> Path:
        messages = [{"role": "system", "content": self.system}, *(m.model_dump() for m in self.history)]
        path.write_text(json.dumps({"character": self.character.label, "messages": messages}, indent=2), "utf-8")
        return path


def system_prompt_version_for(model: str) -> str | None:
    """The template version the model was trained with (recorded by `opencharacter train`)."""
    return model_meta(model).get("system_prompt_version") if Path(model).is_dir() else None
