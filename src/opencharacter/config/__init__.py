"""Every configurable default, in one place.

Each field's `description` is the documentation: CLI help and the README table come from it.
Precedence: these defaults < a YAML `--config` file < command-line flags. One module per section
(`backend`, `synthesis`, `filters`, `train`, `eval`, `pipeline`, `recipe`); every name is importable from here.
"""

from __future__ import annotations

from opencharacter.config.backend import BackendConfig, ExecutorConfig
from opencharacter.config.base import Config, build, load_yaml, merge, validation_message
from opencharacter.config.eval import EvalConfig
from opencharacter.config.filters import FiltersConfig
from opencharacter.config.pipeline import ModelPrice, PipelineConfig, check_top_level
from opencharacter.config.recipe import RecipeConfig
from opencharacter.config.reference import reference_markdown
from opencharacter.config.synthesis import (
    InstructionSource,
    PersonaSource,
    ProfilesConfig,
    SelectionConfig,
    SynthesisConfig,
)
from opencharacter.config.train import LauncherConfig, TrainConfig

__all__ = [
    "BackendConfig",
    "Config",
    "EvalConfig",
    "ExecutorConfig",
    "FiltersConfig",
    "InstructionSource",
    "LauncherConfig",
    "ModelPrice",
    "PersonaSource",
    "PipelineConfig",
    "ProfilesConfig",
    "RecipeConfig",
    "SelectionConfig",
    "SynthesisConfig",
    "TrainConfig",
    "build",
    "check_top_level",
    "load_yaml",
    "merge",
    "reference_markdown",
    "validation_message",
]
