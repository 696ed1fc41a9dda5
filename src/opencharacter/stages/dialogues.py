"""Instruction + character → in-character dialogue, by rewriting (R) or generating (G) the answers.

Both strategies produce the same record: the character system prompt, the user turns exactly as
given, and in-character assistant turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opencharacter.config import SynthesisConfig
from opencharacter.engine import Engine, WorkItem
from opencharacter.errors import ParseError
from opencharacter.hashing import content_hash
from opencharacter.prompts import PromptTemplate, load_prompt
from opencharacter.records import (
    Character,
    ChatMessage,
    ChatRequest,
    Completion,
    Dialogue,
    Instruction,
    Strategy,
)
from opencharacter.system_prompt import system_template

STAGE = "dialogues"
_MAX_ANSWER_CHARS = 4000


@dataclass(frozen=True)
class Pairing:
    instruction: Instruction
    character: Character
    strategy: Strategy


def dialogue_items(
    pairs: list[tuple[Instruction, list[Character]]], strategy: Strategy
) -> tuple[list[WorkItem[Pairing]], int]:
    """Work items, and how many pairings were not applicable (rewrite needs answers to rewrite)."""
    items, skipped = [], 0
    for index, (instruction, characters) in enumerate(pairs):
        if strategy == "rewrite" and not instruction.fully_answered:
            skipped += len(characters)
            continue
        for slot, character in enumerate(characters):
            dialogue_id = content_hash("dialogue", instruction.question_id, character.character_id, strategy)
            sort_key = f"{instruction.source}.{index:09d}.{strategy}.{slot:02d}"
            items.append(WorkItem(dialogue_id, sort_key, Pairing(instruction, character, strategy)))
    return items, skipped


def min_rewrite_chars(originals: list[str]) -> int:
    """A floor on rewritten answer length: a third of the shortest original, at most 80 characters.

    Without it a weak teacher "rewrites" a paragraph as a single word, which is valid JSON but
    not a dialogue worth training on.
    """
    return max(1, min(80, min(len(a) for a in originals) // 3))


def rewrite_schema(answers: int, min_chars: int = 1) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "answers": {
                "type": "array",
                "items": {"type": "string", "minLength": min_chars, "maxLength": _MAX_ANSWER_CHARS},
                "minItems": answers,
                "maxItems": answers,
            }
        },
        "required": ["answers"],
        "additionalProperties": False,
    }


def parse_rewrite(expected: int, min_chars: int = 1):
    def parse(completion: Completion) -> list[str]:
        try:
            answers = json.loads(completion.text)["answers"]
        except (ValueError, KeyError, TypeError):
            cause = "truncated at max_tokens" if completion.finish_reason == "length" else "not {'answers': [...]}"
            raise ParseError(f"rewrite output is invalid: {cause}", raw=completion.text) from None
        if not isinstance(answers, list) or len(answers) != expected:
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            raise ParseError(f"rewrite returned {got} answers, expected {expected}", raw=completion.text)
        if not all(isinstance(a, str) and len(a.strip()) >= min_chars for a in answers):
            raise ParseError(f"rewrite returned an answer shorter than {min_chars} characters", raw=completion.text)
        return [a.strip() for a in answers]

    return parse


def parse_answer(completion: Completion) -> tuple[str, str]:
    text = completion.text.strip()
    if not text:
        raise ParseError("the model returned an empty answer", raw=completion.text)
    return text, completion.finish_reason


class DialogueMaker:
    """Holds the templates and settings of one synthesis run; `work` is what the stage runner calls."""

    def __init__(self, engine: Engine, config: SynthesisConfig) -> None:
        self.engine, self.config = engine, config
        self.rewrite_template: PromptTemplate = load_prompt("rewrite", config.rewrite_prompt_version)
        self.generate_template: PromptTemplate = load_prompt("generate", config.generate_prompt_version)
        self.system_template: PromptTemplate = system_template(config.system_prompt_version)

    async def work(self, item: WorkItem[Pairing], first_attempt: int) -> Dialogue:
        pairing = item.payload
        if pairing.strategy == "rewrite":
            answers, reasons, template = (
                await self._rewrite(pairing, first_attempt),
                [],
                self.rewrite_template,
            )
        else:
            answers, reasons = await self._generate(pairing, first_attempt)
            template = self.generate_template
        character = pairing.character
        messages = [
            ChatMessage(
                role="system",
                content=self.system_template.render_block(
                    "system", persona=character.persona, character=character.character
                ),
            )
        ]
        for user, answer in zip(pairing.instruction.user_turns, answers, strict=True):
            messages += [
                ChatMessage(role="user", content=user),
                ChatMessage(role="assistant", content=answer),
            ]
        return Dialogue(
            dialogue_id=item.id,
            question_id=pairing.instruction.question_id,
            character_id=character.character_id,
            strategy=pairing.strategy,
            source=pairing.instruction.source,
            messages=messages,
            character_answer=answers[-1],
            model=self.engine.backend.model_id,
            prompt_version=template.id,
            system_prompt_version=self.system_template.id,
            finish_reasons=reasons,
        )

    async def _rewrite(self, pairing: Pairing, first_attempt: int) -> list[str]:
        """R: the whole session in one structured call; user turns are never sent back for editing."""
        instruction, character = pairing.instruction, pairing.character
        expected = len(instruction.answers)
        min_chars = min_rewrite_chars(instruction.answers)
        request = ChatRequest(
            messages=self.rewrite_template.render(
                persona=character.persona,
                character=character.character,
                turns=[t.model_dump() for t in instruction.turns],
                answers=instruction.answers,
            ),
            # max_tokens is per answer; one rewrite call carries all of a session's answers.
            sampling=self.config.sampling.model_copy(
                update={"max_tokens": self.config.sampling.max_tokens * expected + 16}
            ),
            response_schema=rewrite_schema(expected, min_chars),
            schema_name="rewritten_answers",
        )
        answers, _ = await self.engine.generate_parsed(
            request,
            parse_rewrite(expected, min_chars),
            prompt_id=self.rewrite_template.id,
            max_attempts=self.config.max_attempts,
            first_attempt=first_attempt,
        )
        return answers

    async def _generate(self, pairing: Pairing, first_attempt: int) -> tuple[list[str], list[str]]:
        """G: each answer generated in character, conditioned on the new dialogue so far."""
        character = pairing.character
        system = self.generate_template.render(persona=character.persona, character=character.character)
        history: list[ChatMessage] = []
        answers, reasons = [], []
        for user in pairing.instruction.user_turns:
            history.append(ChatMessage(role="user", content=user))
            request = ChatRequest(messages=[*system, *history], sampling=self.config.sampling)
            (answer, reason), _ = await self.engine.generate_parsed(
                request,
                parse_answer,
                prompt_id=self.generate_template.id,
                max_attempts=self.config.max_attempts,
                first_attempt=first_attempt,
            )
            history.append(ChatMessage(role="assistant", content=answer))
            answers.append(answer)
            reasons.append(reason)
        return answers, reasons
