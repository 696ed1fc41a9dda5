"""Instruction + character → in-character dialogue, by rewriting (R) or generating (G) the answers.

Both strategies produce the same record: the character system prompt, the user turns exactly as
given, and in-character assistant turns.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from opencharacter.config import SynthesisConfig
from opencharacter.errors import ParseError
from opencharacter.hashing import content_hash
from opencharacter.prompts import PromptTemplate, load_prompt
from opencharacter.prompts.system_prompt import system_template
from opencharacter.records import (
    Character,
    ChatMessage,
    ChatRequest,
    Completion,
    Dialogue,
    Instruction,
    Strategy,
)
from opencharacter.stages.base import Generate, WorkItem

STAGE = "dialogues"
_MAX_ANSWER_CHARS = 4000


CharacterLookup = Callable[[str], Character]
"""A character id → its `Character` (e.g. read from the run store by id)."""


class Pairing:
    """One dialogue to make: an instruction, a character, a strategy and which candidate.

    The character may be given as an id and a `lookup`: it is then read only when the stage needs
    it, so the items a rerun skips (done, or failed before) never load a character, and a run with
    20k characters keeps a handful in memory, not all of them. A pickled pairing carries the
    character itself (a Ray worker has no lookup). `candidate` is which of `synthesis.candidates`
    samples of the pairing the item makes (0: the only one when k = 1).
    """

    __slots__ = ("_character", "_lookup", "candidate", "character_id", "instruction", "strategy")

    def __init__(
        self,
        instruction: Instruction,
        character: Character | None = None,
        strategy: Strategy = "generate",
        candidate: int = 0,
        *,
        character_id: str | None = None,
        lookup: CharacterLookup | None = None,
    ) -> None:
        if character is None and (character_id is None or lookup is None):
            raise TypeError("Pairing needs a character, or a character_id and a lookup")
        self.instruction, self.strategy, self.candidate = instruction, strategy, candidate
        self.character_id = character.character_id if character is not None else character_id
        self._character, self._lookup = character, lookup

    @property
    def character(self) -> Character:
        """The character, read through the lookup the first time a stage asks for it."""
        if self._character is None:
            assert self._lookup is not None and self.character_id is not None
            self._character = self._lookup(self.character_id)
        return self._character

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.instruction, self.character, self.strategy, self.candidate))

    def _key(self) -> tuple[Any, ...]:
        return (self.instruction, self.character_id, self.strategy, self.candidate)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pairing) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.instruction.question_id, self.character_id, self.strategy, self.candidate))

    def __repr__(self) -> str:
        return (
            f"Pairing(question_id={self.instruction.question_id!r}, character_id={self.character_id!r}, "
            f"strategy={self.strategy!r}, candidate={self.candidate})"
        )


def candidate_id(question_id: str, character_id: str, strategy: Strategy, candidate: int = 0) -> str:
    """A dialogue's record id. Candidate 0 keeps the id dialogues had before candidates existed (so
    runs made then resume unchanged); it is also the pair's id, which every candidate's score names."""
    if candidate == 0:
        return content_hash("dialogue", question_id, character_id, strategy)
    return content_hash("dialogue", question_id, character_id, strategy, candidate)


def applies(instruction: Instruction, strategy: Strategy) -> bool:
    """Rewrite needs an answer to rewrite for every user turn; generate applies to any instruction."""
    return strategy == "generate" or instruction.fully_answered


def dialogue_items(
    pairs: Iterable[tuple[int, Instruction, Sequence[Character | str]]],
    strategy: Strategy,
    candidates: int = 1,
    lookup: CharacterLookup | None = None,
) -> Iterator[WorkItem[Pairing]]:
    """Work items, lazily, for the instructions `strategy` applies to (`index` is the source order).

    Characters are `Character`s, or ids that `lookup` turns into characters when an item runs.

    With `candidates` k > 1, each pairing gives k items; candidate c > 0 sorts right after the ones
    before it (`….02`, `….02.01`, `….02.02`, `….03`), so a pair's candidates are adjacent in the
    store's sort order and the selection can stream them pair by pair.
    """
    for index, instruction, characters in pairs:
        if not applies(instruction, strategy):
            continue
        for slot, character in enumerate(characters):
            sort_key = f"{instruction.source}.{index:09d}.{strategy}.{slot:02d}"
            given = {"character_id": character, "lookup": lookup} if isinstance(character, str) else {}
            character_id = character if isinstance(character, str) else character.character_id
            for candidate in range(candidates):
                yield WorkItem(
                    candidate_id(instruction.question_id, character_id, strategy, candidate),
                    f"{sort_key}.{candidate:02d}" if candidate else sort_key,
                    Pairing(instruction, None if given else character, strategy, candidate, **given),  # type: ignore[arg-type]
                )


def _variant(pairing: Pairing) -> dict[str, int]:
    """`variant` only for candidates after the first, so a `generate` written before candidates
    existed (tests, user code) still serves k = 1 unchanged."""
    return {"variant": pairing.candidate} if pairing.candidate else {}


def min_rewrite_chars(originals: list[str]) -> int:
    """A floor on rewritten answer length: a third of the shortest original, at most 80 characters.

    Without it a weak teacher "rewrites" a paragraph as a single word, which is valid JSON but
    not a dialogue worth training on.
    """
    return max(1, min(80, min(len(a) for a in originals) // 3))


@functools.lru_cache(maxsize=1024)
def rewrite_schema(answers: int, min_chars: int = 1) -> dict[str, Any]:
    """Built once per (answer count, floor), not per call; callers must not mutate it."""
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
    """A structured rewrite's answers, with no finish reasons (a cut JSON answer fails to parse)."""

    def parse(completion: Completion) -> tuple[list[str], list[str]]:
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
        return [a.strip() for a in answers], []

    return parse


def parse_plain_rewrite(min_chars: int = 1):
    """One rewritten answer as plain text: the same length floor as a structured rewrite's."""

    def parse(completion: Completion) -> tuple[list[str], list[str]]:
        text = completion.text.strip()
        if len(text) < min_chars:
            raise ParseError(f"rewrite returned an answer shorter than {min_chars} characters", raw=completion.text)
        return [text], [completion.finish_reason]

    return parse


def parse_answer(completion: Completion) -> tuple[str, str]:
    text = completion.text.strip()
    if not text:
        raise ParseError("the model returned an empty answer", raw=completion.text)
    return text, completion.finish_reason


class DialogueStage:
    """(instruction, character, strategy) → `Dialogue`, by rewriting (R) or generating (G) answers.

    Holds the synthesis settings and the teacher's model id as data; templates are resolved once
    per object (and again, once, in a process that unpickles it).
    """

    name = STAGE

    def __init__(self, config: SynthesisConfig, model: str) -> None:
        self.config, self.model = config, model
        self.max_attempts = config.max_attempts
        self.rewrite_template: PromptTemplate = load_prompt("rewrite", config.rewrite_prompt_version)
        self.generate_template: PromptTemplate = load_prompt("generate", config.generate_prompt_version)
        self.system_template: PromptTemplate = system_template(config.system_prompt_version)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.config, self.model))

    def settings(self, strategy: Strategy) -> dict[str, Any]:
        """What shapes a dialogue besides its instruction, character and model; a run keeps one."""
        template = self.rewrite_template if strategy == "rewrite" else self.generate_template
        settings: dict[str, Any] = {
            "prompt": template.id,
            "system_prompt": self.system_template.id,
            "sampling": self.config.sampling.model_dump(mode="json"),
        }
        if self.config.candidates > 1:  # absent at 1, so runs made before candidates existed still match
            settings["candidates"] = self.config.candidates
        return settings

    async def __call__(self, item: WorkItem[Pairing], generate: Generate, first_attempt: int) -> Dialogue:
        pairing = item.payload
        if pairing.strategy == "rewrite":
            answers, reasons = await self._rewrite(pairing, generate, first_attempt)
            template = self.rewrite_template
        else:
            answers, reasons = await self._generate(pairing, generate, first_attempt)
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
            model=self.model,
            prompt_version=template.id,
            system_prompt_version=self.system_template.id,
            finish_reasons=reasons,
            candidate=pairing.candidate,
        )

    async def _rewrite(self, pairing: Pairing, generate: Generate, first_attempt: int) -> tuple[list[str], list[str]]:
        """R: the whole session in one call; user turns are never sent back for editing.

        One answer is rewritten as plain text when the template has a one-answer shape (rewrite@v2
        on): small teachers write far worse inside a JSON string. A session of several answers is one
        structured call, so the answers stay aligned with their turns. Finish reasons are known
        only for the plain call (a cut JSON answer fails to parse instead).
        """
        instruction, character = pairing.instruction, pairing.character
        expected = len(instruction.answers)
        min_chars = min_rewrite_chars(instruction.answers)
        plain = expected == 1 and self.rewrite_template.has_block("one_user")
        variables = {
            "persona": character.persona,
            "character": character.character,
            "turns": [t.model_dump() for t in instruction.turns],
            "answers": instruction.answers,
        }
        if plain:
            request = ChatRequest(
                messages=self.rewrite_template.render(prefix="one_", **variables), sampling=self.config.sampling
            )
        else:
            request = ChatRequest(
                messages=self.rewrite_template.render(**variables),
                # max_tokens is per answer; one rewrite call carries all of a session's answers.
                sampling=self._rewrite_sampling(expected),
                response_schema=rewrite_schema(expected, min_chars),
                schema_name="rewritten_answers",
            )
        parse = parse_plain_rewrite(min_chars) if plain else parse_rewrite(expected, min_chars)
        result, _ = await generate(
            request,
            parse,
            prompt_id=self.rewrite_template.id,
            max_attempts=self.max_attempts,
            first_attempt=first_attempt,
            **_variant(pairing),
        )
        return result

    def _rewrite_sampling(self, answers: int):
        sampling = self.config.sampling
        return sampling.model_copy(update={"max_tokens": sampling.max_tokens * answers + 16})

    async def _generate(self, pairing: Pairing, generate: Generate, first_attempt: int) -> tuple[list[str], list[str]]:
        """G: each answer generated in character, conditioned on the new dialogue so far."""
        character = pairing.character
        system = self.generate_template.render(persona=character.persona, character=character.character)
        history: list[ChatMessage] = []
        answers, reasons = [], []
        for user in pairing.instruction.user_turns:
            history.append(ChatMessage(role="user", content=user))
            request = ChatRequest(messages=[*system, *history], sampling=self.config.sampling)
            (answer, reason), _ = await generate(
                request,
                parse_answer,
                prompt_id=self.generate_template.id,
                max_attempts=self.max_attempts,
                first_attempt=first_attempt,
                **_variant(pairing),
            )
            history.append(ChatMessage(role="assistant", content=answer))
            answers.append(answer)
            reasons.append(reason)
        return answers, reasons
