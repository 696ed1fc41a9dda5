"""`train.grpo:` — reinforcement learning with TRL's GRPOTrainer and weighted, named rewards."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from opencharacter.config.base import Config
from opencharacter.registry import REWARDS


class RewardSpec(Config):
    """One reward term: a registered reward by name, its weight, and that reward's own settings.

    Keys beyond `name`, `weight` and `label` are the reward's settings (e.g. `signal: lexical` for
    `fidelity`); each reward validates its own, so a typo is an error naming the reward.
    """

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="A registered reward: fidelity, copy_penalty, judge, format, or your own.")
    weight: float = Field(1.0, description="Multiplies the reward in the sum GRPO's advantages are computed from.")
    label: str | None = Field(
        None, description="Name in the logs (default: `name`); needed when one reward appears twice."
    )

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        return REWARDS.check(value)

    @property
    def shown(self) -> str:
        return self.label or self.name

    def settings(self) -> dict[str, Any]:
        """The reward's own settings: every key the spec holds beyond name, weight and label."""
        return dict(self.model_extra or {})


def _default_rewards() -> list[RewardSpec]:
    return [
        RewardSpec(name="fidelity", weight=1.0),
        RewardSpec(name="copy_penalty", weight=1.0),
        RewardSpec(name="format", weight=0.5),
    ]


class GRPOSettings(Config):
    """Settings only GRPO has; the rest (learning rate, LoRA, steps, seed) are the `train:` ones."""

    rewards: list[RewardSpec] = Field(
        default_factory=_default_rewards,
        min_length=1,
        description="Weighted reward terms, summed per answer: [{name, weight, label, ...the reward's settings}].",
    )
    num_generations: int = Field(4, ge=2, description="Answers sampled per prompt; advantages compare within them.")
    prompts_per_step: int = Field(2, ge=1, description="Prompts per optimizer step (× num_generations answers).")
    max_completion_length: int = Field(96, ge=1, description="Tokens per sampled answer.")
    temperature: float = Field(0.9, gt=0, le=2, description="Sampling temperature of the answers.")
    beta: float = Field(
        0.0, ge=0, description="KL pull towards the starting model (0: no reference model is kept, as TRL's default)."
    )
    max_prompts: int | None = Field(
        None, ge=1, description="Use at most this many prompts (seeded sample): bounds the cost on small machines."
    )
    instructions: str | None = Field(
        None,
        description="Prompts from this instruction file (JSONL/CSV, as `synthesize` reads) asked of every character "
        "of the run, instead of the questions of the run's dialogues.",
    )
