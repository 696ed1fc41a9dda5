"""opencharacter: synthetic personas → character profiles → in-character dialogues → role-play models.

The public API is re-exported here, lazily: `import opencharacter` (and `opencharacter --help`)
imports only the errors; `opencharacter.run_pipeline` loads its module on first use (PEP 562
`__getattr__`), and torch, transformers and friends load only when a backend or trainer needs them.

    import opencharacter as oc
    personas, _ = oc.load_personas("persona.jsonl")
    oc.run_profiles("runs/r1", personas, oc.ProfilesConfig(), oc.BackendConfig(backend="fake"))
    oc.import_release("hf:xywang1/OpenCharacter", "runs/paper")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from opencharacter.errors import (
    BackendError,
    ConfigError,
    InputError,
    MissingDependencyError,
    OpenCharacterError,
    ParseError,
)

# name → module that defines it (`module:attr` when the name differs); one table, so a name is never
# exported from two places.
_LAZY: dict[str, str] = {
    # configuration (every default, documented once)
    "BackendConfig": "opencharacter.config",
    "EvalConfig": "opencharacter.config",
    "ExecutorConfig": "opencharacter.config",
    "FiltersConfig": "opencharacter.config",
    "InstructionSource": "opencharacter.config",
    "PersonaSource": "opencharacter.config",
    "PipelineConfig": "opencharacter.config",
    "ProfilesConfig": "opencharacter.config",
    "RecipeConfig": "opencharacter.config",
    "SynthesisConfig": "opencharacter.config",
    "TrainConfig": "opencharacter.config",
    # records
    "Character": "opencharacter.records",
    "ChatMessage": "opencharacter.records",
    "ChatRequest": "opencharacter.records",
    "Completion": "opencharacter.records",
    "Dialogue": "opencharacter.records",
    "Instruction": "opencharacter.records",
    "Persona": "opencharacter.records",
    "PreferencePair": "opencharacter.records",
    "Profile": "opencharacter.records",
    "Sampling": "opencharacter.records",
    # inputs
    "iter_instructions": "opencharacter.sources",
    "iter_personas": "opencharacter.sources",
    "load_instructions": "opencharacter.sources",
    "load_personas": "opencharacter.sources",
    "import_release": "opencharacter.pipeline.release_import",
    # backends
    "Backend": "opencharacter.backends",
    "build_backend": "opencharacter.backends",
    "register_backend": "opencharacter.backends",
    # the pipeline
    "RunStore": "opencharacter.store",
    "export_run": "opencharacter.pipeline",
    "run_pipeline": "opencharacter.pipeline",
    "run_profiles": "opencharacter.pipeline",
    "run_synthesis": "opencharacter.pipeline",
    "apply_filters": "opencharacter.filters",
    "render_system_prompt": "opencharacter.prompts.system_prompt",
    # training, evaluation, the recipe
    # (not `train`: that name is the subpackage opencharacter.train, which an import binds here)
    "train_model": "opencharacter.train.trainer:train",
    "evaluate": "opencharacter.eval.runner",
    "run_recipe": "opencharacter.recipe.experiment",
    # character cards
    "CardV2": "opencharacter.cards",
    "CardV3": "opencharacter.cards",
    "card_from_character": "opencharacter.cards",
    "character_from_card": "opencharacter.cards",
    "read_card": "opencharacter.cards",
    "write_card_json": "opencharacter.cards",
    "write_card_png": "opencharacter.cards",
    # publishing
    "export_gguf": "opencharacter.export.gguf",
    "push_model": "opencharacter.export.hub",
    "push_run": "opencharacter.export.hub",
}

__all__ = [  # literal, so linters and readers see it; tests/test_public_api.py pins it against _LAZY
    "Backend",
    "BackendConfig",
    "BackendError",
    "CardV2",
    "CardV3",
    "Character",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "ConfigError",
    "Dialogue",
    "EvalConfig",
    "ExecutorConfig",
    "FiltersConfig",
    "InputError",
    "Instruction",
    "InstructionSource",
    "MissingDependencyError",
    "OpenCharacterError",
    "ParseError",
    "Persona",
    "PersonaSource",
    "PipelineConfig",
    "PreferencePair",
    "Profile",
    "ProfilesConfig",
    "RecipeConfig",
    "RunStore",
    "Sampling",
    "SynthesisConfig",
    "TrainConfig",
    "__version__",
    "apply_filters",
    "build_backend",
    "card_from_character",
    "character_from_card",
    "evaluate",
    "export_gguf",
    "export_run",
    "import_release",
    "iter_instructions",
    "iter_personas",
    "load_instructions",
    "load_personas",
    "push_model",
    "push_run",
    "read_card",
    "register_backend",
    "render_system_prompt",
    "run_pipeline",
    "run_profiles",
    "run_recipe",
    "run_synthesis",
    "train_model",
    "write_card_json",
    "write_card_png",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'opencharacter' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; never imported at run time
    from opencharacter.backends import Backend, build_backend, register_backend
    from opencharacter.cards import (
        CardV2,
        CardV3,
        card_from_character,
        character_from_card,
        read_card,
        write_card_json,
        write_card_png,
    )
    from opencharacter.config import (
        BackendConfig,
        EvalConfig,
        ExecutorConfig,
        FiltersConfig,
        InstructionSource,
        PersonaSource,
        PipelineConfig,
        ProfilesConfig,
        RecipeConfig,
        SynthesisConfig,
        TrainConfig,
    )
    from opencharacter.eval.runner import evaluate
    from opencharacter.export.gguf import export_gguf
    from opencharacter.export.hub import push_model, push_run
    from opencharacter.filters import apply_filters
    from opencharacter.pipeline import export_run, run_pipeline, run_profiles, run_synthesis
    from opencharacter.pipeline.release_import import import_release
    from opencharacter.prompts.system_prompt import render_system_prompt
    from opencharacter.recipe.experiment import run_recipe
    from opencharacter.records import (
        Character,
        ChatMessage,
        ChatRequest,
        Completion,
        Dialogue,
        Instruction,
        Persona,
        PreferencePair,
        Profile,
        Sampling,
    )
    from opencharacter.sources import iter_instructions, iter_personas, load_instructions, load_personas
    from opencharacter.store import RunStore
    from opencharacter.train.trainer import train as train_model
