"""Pydantic models for every record that crosses a boundary: files, the store, backends, the CLI.

The released OpenCharacter dataset shape is kept where it has one (`character_id`, `persona`,
`character`, `question_id`, `character_answer`), so our files load where theirs do.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opencharacter.hashing import HASH_VERSION, content_hash, normalize_text

Role = Literal["system", "user", "assistant"]
Strategy = Literal["rewrite", "generate"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(Record):
    role: Role
    content: str


class Persona(Record):
    """A one-line persona, as Persona Hub writes them."""

    persona: str

    @field_validator("persona")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        value = normalize_text(value)
        if not value:
            raise ValueError("persona is empty")
        return value

    @property
    def character_id(self) -> str:
        """Same persona text (up to whitespace) ⇒ same id, across runs and machines."""
        return content_hash("persona", self.persona)


# Field order is the order of the released `character` text, and of the JSON the model writes.
PROFILE_LABELS: dict[str, str] = {
    "name": "Name",
    "age": "Age",
    "gender": "Gender",
    "race": "Race",
    "birth_place": "Born Place",
    "appearance": "Appearance",
    "general_experience": "General Experience",
    "personality": "Personality",
}


class Profile(Record):
    """The eight attributes of the paper's character profile.

    Length caps are part of the JSON schema sent to the model: they stop small models from
    looping inside one string until the token budget runs out.
    """

    name: str = Field(min_length=1, max_length=80)
    age: int = Field(ge=1, le=120)
    gender: str = Field(min_length=1, max_length=40)
    race: str = Field(min_length=1, max_length=60)
    birth_place: str = Field(min_length=1, max_length=100)
    appearance: str = Field(min_length=1, max_length=600)
    general_experience: str = Field(min_length=1, max_length=800)
    personality: str = Field(min_length=1, max_length=600)

    @field_validator("name", "gender", "race", "birth_place", "appearance", "general_experience", "personality")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    def render(self) -> str:
        """The released dataset's `character` text: one `Label: value` line per attribute."""
        return "\n".join(f"{label}: {getattr(self, key)}" for key, label in PROFILE_LABELS.items())


class Character(Record):
    character_id: str
    persona: str
    character: str
    profile: Profile
    model: str
    prompt_version: str


class Instruction(Record):
    """One instruction session: alternating user/assistant turns, starting with a user turn.

    Sources without answers (Persona Hub instructions) end with a user turn and no assistant one;
    only the `generate` strategy applies to those.
    """

    question_id: str
    source: str
    turns: list[ChatMessage] = Field(min_length=1)

    @model_validator(mode="after")
    def _alternates(self) -> Instruction:
        for index, turn in enumerate(self.turns):
            expected = "user" if index % 2 == 0 else "assistant"
            if turn.role != expected:
                raise ValueError(f"turn {index + 1} should be a {expected} turn, got {turn.role}")
            if not turn.content.strip():
                raise ValueError(f"turn {index + 1} ({turn.role}) is empty")
        return self

    @property
    def user_turns(self) -> list[str]:
        return [t.content for t in self.turns if t.role == "user"]

    @property
    def answers(self) -> list[str]:
        return [t.content for t in self.turns if t.role == "assistant"]

    @property
    def fully_answered(self) -> bool:
        return len(self.answers) == len(self.user_turns)

    @staticmethod
    def make_id(turns: list[ChatMessage]) -> str:
        # = content_hash("instruction", [t.model_dump() for t in turns]), spelled out (the same bytes:
        # a ChatMessage dumps as {"content", "role"} in sorted order): it runs for every instruction
        # each time a file is read, twice per command.
        if set(ChatMessage.model_fields) != {"content", "role"}:
            return content_hash("instruction", [t.model_dump() for t in turns])
        body = ",".join(
            f'{{"content":{encode_basestring(t.content)},"role":{encode_basestring(t.role)}}}' for t in turns
        )
        text = f'[{encode_basestring(HASH_VERSION)},"instruction",[{body}]]'
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Dialogue(Record):
    dialogue_id: str
    question_id: str
    character_id: str
    strategy: Strategy
    source: str
    messages: list[ChatMessage]
    character_answer: str
    model: str
    prompt_version: str
    system_prompt_version: str
    finish_reasons: list[str] = Field(
        default_factory=list,
        description="Per generated or plain-text rewritten answer: 'stop', or 'length' when cut at max_tokens "
        "(empty for a structured rewrite: a cut one fails to parse).",
    )
    candidate: int = Field(0, ge=0, description="Which of `synthesis.candidates` answers this is (0: the first).")


class CandidateScore(Record):
    """One line of candidates.jsonl: how well one candidate's answer identifies its own character.

    The own profile is ranked among `candidates` profiles (itself + sampled distractors) by embedding
    similarity to the answer, names removed, exactly as the evaluation's fidelity does.
    """

    pair_id: str = Field(description="dialogue_id of candidate 0: the (instruction, character, strategy) pair.")
    dialogue_id: str
    candidate: int
    rank: int = Field(ge=1, description="Rank of the own profile (1 = identified).")
    candidates: int = Field(ge=2, description="Profiles ranked (own + distractors).")
    margin: float = Field(description="Own similarity minus the best distractor's (ties between equal ranks).")
    chosen: bool


class PreferencePair(Record):
    """One line of preferences.jsonl: best vs worst candidate of a pair, for DPO (`train --method dpo`).

    `prompt` is the chosen candidate's dialogue up to its last user turn (system prompt included);
    `chosen` and `rejected` are the two candidates' last answers.
    """

    pair_id: str
    question_id: str
    character_id: str
    strategy: Strategy
    prompt: list[ChatMessage]
    chosen: str
    rejected: str
    chosen_rank: int
    rejected_rank: int


class Failure(Record):
    stage: str
    item_id: str
    reason: str
    attempts: int
    raw: str | None = None


class Sampling(Record):
    """Sampling parameters; part of every cache key, so changing one makes new calls."""

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(512, ge=1, description="Upper bound on generated tokens per call.")
    repetition_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="Local backends only; OpenAI-compatible servers ignore it. transformers counts generated "
        "tokens only (never the prompt's: a character would avoid its own profile's words); vLLM counts both.",
    )
    seed: int | None = Field(
        None, description="Mixed into the seed the engine gives each call (reruns reproduce; retries redraw)."
    )


class ChatRequest(Record):
    """What a backend receives: rendered messages, sampling, and an optional JSON schema to obey."""

    messages: list[ChatMessage]
    sampling: Sampling = Sampling()
    response_schema: dict[str, Any] | None = None
    schema_name: str = "response"


class Completion(Record):
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
