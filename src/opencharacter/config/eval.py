"""`eval:` — role-play evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from opencharacter.config.backend import BackendConfig
from opencharacter.config.base import Config
from opencharacter.records import Sampling

# What the reference's OpenAI client (`code/utils.py`, `openai_chat_gen`) puts in every body besides the
# sampling: the SDK writes `stop=None` as null. Sent as given, so the bodies are the reference's.
_REFERENCE_BODY = {"frequency_penalty": 0, "presence_penalty": 0, "stop": None}


class PersonaGymConfig(Config):
    """`eval.personagym:` — the PersonaGym protocol, read from a checkout of PersonaGym at run time.

    The sampling defaults are the reference's (the authors' fork, `code/run.py` + `code/utils.py`):
    answers of API models 0.9 / 0.9 / 3000 tokens, the OpenCharacter student's route 0.9 with no
    top_p and 1024 tokens, score examples and verdicts 0 / 0 / 3000 tokens; no seed, no repetition
    penalty, as the reference sends none.
    """

    checkout: str | None = Field(
        None, description="A PersonaGym checkout (the authors' fork or upstream): questions/, rubrics/, prompts/."
    )
    questions: str = Field(
        "questions/benchmark-v1", description="The benchmark's question folder, relative to the checkout."
    )
    batch_size: int = Field(5, ge=1, le=20, description="Answers per verdict call (the reference's 5).")
    answer_sampling: Sampling = Field(
        default_factory=lambda: Sampling(
            temperature=0.9,
            top_p=0.9,
            max_tokens=3000,
            repetition_penalty=1.0,
            seeded=False,
            extra_body=_REFERENCE_BODY,
        ),
        description="Model under test with --system-prompt bare (the reference's API models).",
    )
    student_sampling: Sampling = Field(
        default_factory=lambda: Sampling(
            temperature=0.9,
            top_p=None,
            max_tokens=1024,
            repetition_penalty=1.0,
            seeded=False,
            extra_body={"stop": ["<|eot_id|>"]},
        ),
        description="Model under test with --system-prompt student (the reference's OpenCharacter route).",
    )
    judge_sampling: Sampling = Field(
        default_factory=lambda: Sampling(
            temperature=0.0,
            top_p=0.0,
            max_tokens=3000,
            repetition_penalty=1.0,
            seeded=False,
            extra_body=_REFERENCE_BODY,
        ),
        description="Judges and the score-example model.",
    )


class EvalConfig(Config):
    questions_per_task: int = Field(2, ge=1, le=20, description="Generated questions per task and persona.")
    light: bool = Field(False, description="PersonaGym-Light: one question per task per persona.")
    protocol: Literal["opencharacter", "personagym"] = Field(
        "opencharacter",
        description="'opencharacter': our rubrics and judge prompt (generated questions); 'personagym': "
        "PersonaGym's own, read from `personagym.checkout` (its benchmark).",
    )
    system_prompt: Literal["ours", "bare", "student"] = Field(
        "ours",
        description="'ours': the training template (persona + profile); 'bare': 'adopt the identity of …'; "
        "'student' (personagym protocol): the system prompt the reference gives the OpenCharacter model.",
    )
    judges: list[BackendConfig] = Field(
        default_factory=list,
        description="Judges, each with its own backend, model, base_url and api_key_env (--judge adds more). "
        "Name pinned versions (gpt-4o-2024-08-06): the id is recorded with every score.",
    )
    example_model: BackendConfig | None = Field(
        None, description="Writes the score examples (personagym protocol; default: the first judge)."
    )
    personagym: PersonaGymConfig = Field(
        default_factory=PersonaGymConfig, description="The personagym protocol's checkout and sampling (below)."
    )
    answer_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=256), description="Model under test."
    )
    judge_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=384), description="Judges (greedy)."
    )
    generation_sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=512),
        description="Question and score-example generation (done by the first judge).",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries for unparsable verdicts and generations.")
    fidelity: bool = Field(True, description="Also measure judge-free character fidelity (needs ≥ 2 characters).")
    fidelity_questions: int = Field(3, ge=1, le=5, description="Shared questions every character answers.")
    worst: int = Field(5, ge=0, description="Lowest-scored answers shown in the report.")
