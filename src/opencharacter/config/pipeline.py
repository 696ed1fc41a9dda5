"""The top level of a pipeline YAML and of a recipe YAML, and the configuration reference made from both."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from opencharacter.config.backend import BackendConfig, ExecutorConfig
from opencharacter.config.base import Config
from opencharacter.config.eval import EvalConfig
from opencharacter.config.filters import FiltersConfig
from opencharacter.config.synthesis import InstructionSource, PersonaSource, ProfilesConfig, SynthesisConfig
from opencharacter.config.train import TrainConfig
from opencharacter.errors import ConfigError


class ModelPrice(Config):
    """What one model costs, in US$ per million tokens (a provider's list price)."""

    input: float = Field(ge=0, description="US$ per million prompt (input) tokens.")
    output: float = Field(ge=0, description="US$ per million completion (output) tokens.")


class PipelineConfig(Config):
    """The whole pipeline, as one YAML file for `opencharacter run`."""

    run: str = Field("runs/run", description="Run directory: store, outputs and dataset card.")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where stage work runs.")
    personas: PersonaSource
    instructions: list[InstructionSource] = Field(default_factory=list)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    export: list[Literal["sharegpt", "alpaca", "messages", "parquet"]] = Field(
        default_factory=list, description="Export formats written after synthesis."
    )
    skip_invalid: bool = Field(False, description="Skip malformed input records (and report them).")
    filters: FiltersConfig | None = Field(None, description="Data filters applied after synthesis (RUN/filtered/).")
    train: TrainConfig | None = Field(None, description="Training settings (`opencharacter train --config`).")
    eval: EvalConfig | None = Field(None, description="Evaluation settings (`opencharacter eval --config`).")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="US$ per million tokens by model name, e.g. {gpt-4o-mini: {input: 0.15, output: 0.6}}: "
        "adds cost to the summary, the dataset card and --dry-run estimates.",
    )


def check_top_level(data: dict[str, Any], source: str, model: type[Config] | None = None) -> dict[str, Any]:
    """Reject unknown top-level keys (and non-mapping sections) of a `--config` YAML.

    Commands read only their own section of the pipeline YAML, so a typo'd key (`profile:` for
    `profiles:`) used to be ignored silently there while `run` rejected it; now every command says
    so, with `run`'s words. Sections are fully validated by the command that uses them.
    """
    model = model or PipelineConfig
    unknown = [key for key in data if key not in model.model_fields]
    problems = [f"{source}: {key}: Extra inputs are not permitted" for key in unknown]
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None or value is None or isinstance(value, dict):
            continue
        annotation = field.annotation
        sections = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        if any(issubclass(a, BaseModel) for a in sections):
            problems.append(f"{source}: {key}: must be a mapping of settings, got {type(value).__name__}")
    if problems:
        known = f" (top-level keys: {', '.join(model.model_fields)})" if unknown else ""
        raise ConfigError("; ".join(problems) + known)
    return data
