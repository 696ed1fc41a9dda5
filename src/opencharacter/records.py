"""Pydantic models for every record that crosses a boundary: files, the store, backends, the CLI.

The released OpenCharacter dataset shape is kept where it has one (`character_id`, `persona`,
`character`, `question_id`, `character_answer`), so our files load where theirs do.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

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
    top_p: float | None = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="Nucleus sampling mass; 0 keeps only the most likely token (as OpenAI reads it), "
        "null sends none (the server's default; 1 on local backends).",
    )
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
    seeded: bool = Field(
        True,
        description="False: the engine gives the call no seed (a protocol that must send a reference's "
        "request exactly, as `eval --protocol personagym` does).",
    )
    extra_body: tuple[tuple[str, Any], ...] = Field(
        (),
        description="Further fields of an OpenAI-compatible request body, sent as given (e.g. "
        "{frequency_penalty: 0, stop: null}); local backends ignore them. A mapping in YAML.",
    )

    @field_validator("extra_body", mode="before")
    @classmethod
    def _body_pairs(cls, value: Any) -> Any:
        # A mapping in YAML and JSON; pairs inside, so the record stays hashable (the engine caches by it).
        items = value.items() if isinstance(value, dict) else value
        pairs = []
        for item in items:
            key, field_value = item
            if isinstance(field_value, list):
                field_value = tuple(field_value)
            if isinstance(field_value, dict) or (
                isinstance(field_value, tuple) and not all(isinstance(v, (str, int, float, bool)) for v in field_value)
            ):
                raise ValueError(f"extra_body[{key!r}] must be a JSON scalar or a list of scalars")
            pairs.append((key, field_value))
        return tuple(pairs)

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: Any) -> Any:
        # `seeded` and `extra_body` came after every store's cache keys and provenance hashes were made
        # from this dump: left at their defaults they are left out, so those keys stay the same.
        data = handler(self)
        if data.get("seeded") is True:
            data.pop("seeded")
        if not data.get("extra_body"):
            data.pop("extra_body", None)
        return data

    @property
    def nucleus(self) -> float:
        """`top_p` as a local sampler takes it, in (0, 1]: none sent is 1 (vLLM's and transformers'
        default), 0 is the smallest positive mass, which keeps exactly the most likely token."""
        if self.top_p is None:
            return 1.0
        return max(self.top_p, 1e-9)

    def body_fields(self) -> dict[str, Any]:
        """`extra_body` as JSON fields (tuples back to lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.extra_body}


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
