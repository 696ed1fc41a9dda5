"""Executors run a stage over work items: `local` (asyncio in this process) or `ray` (a Ray cluster).

Executors are registered by import path, like backends, so Ray is imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from opencharacter.errors import ConfigError
from opencharacter.executors.base import (
    Executor,
    ExecutorContext,
    Generate,
    Stage,
    StageResult,
    WorkItem,
    failure_reason,
)
from opencharacter.executors.local import LocalExecutor, run_stage

ExecutorFactory = Callable[[ExecutorContext], Executor]

_REGISTRY: dict[str, str | ExecutorFactory] = {
    "local": "opencharacter.executors.local:LocalExecutor.from_context",
    "ray": "opencharacter.executors.ray:RayExecutor.from_context",
}


def register_executor(name: str, factory: str | ExecutorFactory) -> None:
    _REGISTRY[name] = factory


def build_executor(context: ExecutorContext) -> Executor:
    """The executor `context.config.kind` names, built for one command's run session."""
    factory = _REGISTRY.get(context.config.kind)
    if factory is None:
        raise ConfigError(f"unknown executor {context.config.kind!r}; choose one of {', '.join(_REGISTRY)}")
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # a dependency of the executor is missing: its module says which extra
            raise ConfigError(f"the {context.config.kind!r} executor is not part of this installation") from None
        target: object = module
        for part in attribute.split("."):
            target = getattr(target, part)
        factory = target  # type: ignore[assignment]
    return factory(context)  # type: ignore[operator]


__all__ = [
    "Executor",
    "ExecutorContext",
    "Generate",
    "LocalExecutor",
    "Stage",
    "StageResult",
    "WorkItem",
    "build_executor",
    "failure_reason",
    "register_executor",
    "run_stage",
]
