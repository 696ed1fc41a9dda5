"""A chat session: the character system prompt, the history, and a model that streams or answers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opencharacter.backends import build_backend
from opencharacter.chat.characters import ChatCharacter
from opencharacter.config import BackendConfig
from opencharacter.models.loading import model_meta
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.records import ChatMessage, ChatRequest, Sampling


class ChatModel:
    """Local models stream token by token; HTTP endpoints answer whole (the same engine-free path)."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.backend = build_backend(config)
        self.local = config.backend == "transformers"

    def stream(self, messages: list[ChatMessage], sampling: Sampling) -> Iterator[str]:
        request = ChatRequest(messages=messages, sampling=sampling)
        if not self.local:
            yield asyncio.run(self._complete(request)).text
            return
        yield from self._stream_local(request)

    async def _complete(self, request: ChatRequest) -> Any:
        try:
            return await self.backend.complete(request)
        finally:
            await self.backend.aclose()

    def _stream_local(self, request: ChatRequest) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        from opencharacter.backends.transformers_local import repetition_penalty

        local = self.backend.local_model()  # type: ignore[attr-defined]
        ids = torch.tensor([local.prompt_ids(request)], device=local.device)
        streamer = TextIteratorStreamer(local.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": sampling.max_tokens,
            "logits_processor": repetition_penalty(sampling.repetition_penalty, ids.shape[1]),
            "pad_token_id": local.tokenizer.pad_token_id,
            "streamer": streamer,
        }
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False)

        def run() -> None:
            with torch.inference_mode():
                local.model.generate(**kwargs)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


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
