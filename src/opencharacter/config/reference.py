"""The configuration reference (docs/configuration.md), generated from the field descriptions."""

from __future__ import annotations

from pydantic import BaseModel

from opencharacter.config.backend import BackendConfig, ExecutorConfig
from opencharacter.config.eval import EvalConfig, PersonaGymConfig
from opencharacter.config.filters import FiltersConfig
from opencharacter.config.grpo import GRPOSettings, RewardSpec
from opencharacter.config.pipeline import PipelineConfig
from opencharacter.config.recipe import RecipeConfig
from opencharacter.config.synthesis import (
    InstructionSource,
    PersonaSource,
    ProfilesConfig,
    SelectionConfig,
    SynthesisConfig,
)
from opencharacter.config.train import LauncherConfig, TrainConfig
from opencharacter.records import Sampling


def reference_markdown() -> str:
    """The configuration reference in the README, generated from the field descriptions above."""
    sections = [
        ("backend", BackendConfig),
        ("executor", ExecutorConfig),
        ("profiles", ProfilesConfig),
        ("synthesis", SynthesisConfig),
        ("synthesis.selection", SelectionConfig),
        ("filters", FiltersConfig),
        ("train", TrainConfig),
        ("train.launcher (training in its own processes)", LauncherConfig),
        ("train.grpo (GRPO only)", GRPOSettings),
        ("train.grpo.rewards[] (plus the reward's own settings)", RewardSpec),
        ("eval", EvalConfig),
        ("eval.personagym", PersonaGymConfig),
        ("sampling (inside profiles / synthesis)", Sampling),
        ("personas", PersonaSource),
        ("instructions[]", InstructionSource),
        ("top level", PipelineConfig),
        ("recipe (top level of a recipe YAML)", RecipeConfig),
    ]
    lines = []
    for title, model in sections:
        lines += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            if isinstance(field.default, (str, int, float, bool, tuple)) or field.default is None:
                default = "required" if field.is_required() else f"`{field.default!r}`"
            elif field.default_factory is not None:
                made = field.default_factory()  # type: ignore[call-arg]
                if isinstance(made, BaseModel):
                    changed = made.model_dump(exclude_defaults=True)
                    default = ", ".join(f"`{k}={v!r}`" for k, v in changed.items()) or "its section's defaults"
                else:
                    default = f"`{made!r}`"
            else:
                default = "required"
            default = default.replace("|", "\\|")  # a default such as `<|eot_id|>` must not end the cell
            lines.append(f"| `{name}` | {default} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)
