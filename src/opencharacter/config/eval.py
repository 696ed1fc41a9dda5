"""`eval:` — role-play evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from opencharacter.config.base import Config
from opencharacter.records import Sampling


class EvalConfig(Config):
    questions_per_task: int = Field(2, ge=1, le=20, description="Generated questions per task and persona.")
    light: bool = Field(False, description="PersonaGym-Light: one question per task per persona.")
    system_prompt: Literal["ours", "bare"] = Field(
        "ours", description="'ours': the training template (persona + profile); 'bare': 'adopt the identity of …'."
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
