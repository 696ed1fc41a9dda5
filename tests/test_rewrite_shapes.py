"""R's two request shapes: one answer is a plain-text call, a session of several answers one structured call."""

from __future__ import annotations

import asyncio

import pytest

from opencharacter.backends.base import Backend
from opencharacter.config import BackendConfig, SynthesisConfig
from opencharacter.engine import Engine
from opencharacter.errors import ParseError
from opencharacter.records import ChatMessage, Completion, Instruction
from opencharacter.stages.dialogues import DialogueStage, dialogue_items
from opencharacter.store import RunStore
from tests.test_selection import CHARACTERS

ORIGINAL = "Whisk three parts oil with one part vinegar and a pinch of salt."


class Recording(Backend):
    """Answers plain requests with `text` (cut at max_tokens if `finish` says so) and schema requests
    with valid JSON; keeps every request it saw."""

    def __init__(self, config: BackendConfig, text: str, finish: str = "stop") -> None:
        super().__init__(config)
        self.text, self.finish, self.requests = text, finish, []

    async def complete(self, request):
        self.requests.append(request)
        if request.response_schema is not None:
            count = request.response_schema["properties"]["answers"]["minItems"]
            answers = ", ".join(f'"{self.text} ({n})"' for n in range(count))
            return Completion(text=f'{{"answers": [{answers}]}}')
        return Completion(text=f"  {self.text}\n", finish_reason=self.finish)


def session(*answers: str) -> Instruction:
    turns = []
    for n, answer in enumerate(answers):
        turns += [ChatMessage(role="user", content=f"Question {n}?"), ChatMessage(role="assistant", content=answer)]
    return Instruction(question_id=f"q{len(answers)}", source="s", turns=turns)


def rewrite(tmp_path, instruction: Instruction, text: str, finish: str = "stop", version: int | None = None):
    backend = Recording(BackendConfig(backend="fake"), text, finish)
    stage = DialogueStage(SynthesisConfig(rewrite_prompt_version=version), "fake:teacher")
    store = RunStore(tmp_path / f"run-{len(list(tmp_path.iterdir()))}")
    engine = Engine(backend, store, max_retries=0)
    try:
        (item,) = dialogue_items([(0, instruction, CHARACTERS[:1])], "rewrite")
        return asyncio.run(stage(item, engine.generate_parsed, 0)), backend.requests
    finally:
        store.close()


def test_one_answer_is_rewritten_as_plain_text_with_its_finish_reason(tmp_path):
    dialogue, (request,) = rewrite(tmp_path, session(ORIGINAL), "As a beekeeper I whisk oil and vinegar.", "length")
    assert request.response_schema is None and [m.role for m in request.messages] == ["system", "user"]
    prompt = request.messages[1].content
    assert "Question 0?" in prompt and ORIGINAL in prompt and CHARACTERS[0].character in prompt
    assert dialogue.character_answer == "As a beekeeper I whisk oil and vinegar."  # stripped, nothing else
    assert dialogue.finish_reasons == ["length"] and dialogue.prompt_version == "rewrite@v2"
    assert [m.content for m in dialogue.messages if m.role == "user"] == ["Question 0?"]


def test_a_session_of_several_answers_stays_one_structured_call(tmp_path):
    dialogue, (request,) = rewrite(tmp_path, session(ORIGINAL, "Shake it in a jar."), "In my voice")
    assert request.response_schema is not None and request.schema_name == "rewritten_answers"
    assert [m.content for m in dialogue.messages if m.role == "assistant"] == ["In my voice (0)", "In my voice (1)"]
    assert dialogue.finish_reasons == []


def test_a_plain_rewrite_shorter_than_the_floor_fails_to_parse(tmp_path):
    # The floor is a third of the shortest original (at most 80 characters): 21 here.
    with pytest.raises(ParseError, match="shorter than 21 characters"):
        rewrite(tmp_path, session(ORIGINAL), "Yes.")


def test_rewrite_v1_keeps_its_structured_shape_for_one_answer(tmp_path):
    """Runs made with v1 resume unchanged when they pin it."""
    dialogue, (request,) = rewrite(tmp_path, session(ORIGINAL), "In my voice, oil and vinegar", version=1)
    assert request.response_schema is not None and dialogue.prompt_version == "rewrite@v1"
    assert dialogue.character_answer == "In my voice, oil and vinegar (0)"
