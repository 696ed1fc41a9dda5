"""The top level of a recipe YAML (`opencharacter recipe`)."""

from __future__ import annotations

from pydantic import Field

from opencharacter.config.backend import BackendConfig, ExecutorConfig
from opencharacter.config.base import Config
from opencharacter.config.eval import EvalConfig
from opencharacter.config.filters import FiltersConfig
from opencharacter.config.synthesis import InstructionSource, PersonaSource, ProfilesConfig, SynthesisConfig
from opencharacter.config.train import TrainConfig
from opencharacter.records import Strategy


class RecipeConfig(Config):
    """`opencharacter recipe`: the paper's experiment, end to end, on held-out characters."""

    out: str = Field("runs/recipe", description="Directory for data, models, evaluations and the results table.")
    seed: int = Field(0, description="Seed of the persona split, pairing and training.")
    held_out: float = Field(0.25, gt=0, lt=1, description="Fraction of personas held out of all training data.")
    personas: PersonaSource
    instructions: list[InstructionSource] = Field(min_length=1)
    strategies: list[Strategy] = Field(
        default_factory=lambda: ["generate", "rewrite"], description="One tuned student per strategy (G, R)."
    )
    teacher: BackendConfig = Field(default_factory=BackendConfig, description="Model that writes the data.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where the teacher's work runs.")
    judges: list[BackendConfig] = Field(
        default_factory=lambda: [BackendConfig()], description="Judges for PersonaGym-style scoring."
    )
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="Student training; `model` is the student.")
    dpo: TrainConfig | None = Field(
        None,
        description="A further student: the SFT student of `dpo_from`, then DPO on its best-vs-worst candidate pairs "
        "(needs synthesis.candidates > 1); `model`, `method` and `init_adapter` are set by the recipe.",
    )
    dpo_from: Strategy = Field("generate", description="Which SFT student the DPO student starts from.")
    grpo: TrainConfig | None = Field(
        None,
        description="A further student: the SFT student of `grpo_from`, then GRPO on that strategy's prompts with the "
        "rewards of `grpo.grpo.rewards` (a judge reward without `judge:` uses the first of `judges`); `model`, "
        "`method` and `init_adapter` are set by the recipe.",
    )
    grpo_from: Strategy = Field("generate", description="Which SFT student the GRPO student starts from.")
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig(light=True))
    student_backend: BackendConfig = Field(
        default_factory=BackendConfig, description="How the student answers in evaluation (model is filled in)."
    )
