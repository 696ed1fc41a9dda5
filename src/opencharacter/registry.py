"""One lazy `name → "module:attr"` table per extension point: backends, executors and GRPO rewards.

An entry is an import path (resolved only when the name is used, so choosing `openai` never imports
torch, and `ray` is imported only for the Ray executor) or a ready callable (a plug-in registered
from code). The same table validates the config (`BackendConfig.backend`, `ExecutorConfig.kind`)
and builds the object, so a name `register_*` added is selectable everywhere at once, and a typo
gets a "did you mean".

This module imports nothing of the package but `errors`: the config vocabulary checks names here
without reaching the backends or the executors.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from opencharacter.errors import ConfigError

Entry = str | Callable[..., Any]


class Registry:
    """Named factories of one kind (`backend`, `executor`), by import path or as callables."""

    def __init__(self, kind: str, entries: dict[str, Entry]) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = dict(entries)

    def register(self, name: str, factory: Entry) -> None:
        """Add (or replace) `name`; `factory` is `"module:attr"` (dots allowed in attr) or a callable."""
        if not name:
            raise ConfigError(f"a {self.kind} needs a name")
        self._entries[name] = factory

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def check(self, name: str) -> str:
        """`name` if registered, else a ConfigError that names the closest entries."""
        if name in self._entries:
            return name
        close = difflib.get_close_matches(name, self._entries, n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown {self.kind} {name!r}{hint} (choose one of {', '.join(self._entries)})")

    def load(self, name: str) -> Callable[..., Any]:
        """The factory behind `name`, importing its module now if it is an import path."""
        entry = self._entries[self.check(name)]
        if not isinstance(entry, str):
            return entry
        module_name, _, attribute = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # a dependency of the module is missing: the module says which extra to install
            raise ConfigError(f"the {name!r} {self.kind} is not part of this installation ({module_name})") from None
        target: Any = module
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


BACKENDS = Registry(
    "backend",
    {
        "transformers": "opencharacter.backends.transformers_local:TransformersBackend",
        "openai": "opencharacter.backends.openai_http:OpenAIBackend",
        "vllm": "opencharacter.backends.vllm_offline:VLLMBackend",
        "fake": "opencharacter.backends.fake:FakeBackend",
    },
)
"""`BackendConfig.backend` → a `Backend` class (or a callable taking the BackendConfig)."""

EXECUTORS = Registry(
    "executor",
    {
        "local": "opencharacter.executors.local:LocalExecutor.from_context",
        "ray": "opencharacter.executors.ray:RayExecutor.from_context",
    },
)
"""`ExecutorConfig.kind` → a callable taking an `ExecutorContext` and returning an `Executor`."""

REWARDS = Registry(
    "reward",
    {
        "fidelity": "opencharacter.train.rewards:fidelity_reward",
        "copy_penalty": "opencharacter.train.rewards:copy_penalty_reward",
        "judge": "opencharacter.train.rewards:judge_reward",
        "format": "opencharacter.train.rewards:format_reward",
    },
)
"""`train.grpo.rewards[].name` → a factory `(settings: dict, context: RewardContext) -> reward function`."""
