"""Executors run a stage over work items: `local` (asyncio in this process) or `ray` (a Ray cluster).

Executors are registered by import path in `opencharacter.registry.EXECUTORS`, like backends, so Ray
is imported only when chosen; `register_executor` adds one that `executor: {kind: NAME}` then selects.
"""

from __future__ import annotations

from collections.abc import Callable

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
from opencharacter.registry import EXECUTORS

ExecutorFactory = Callable[[ExecutorContext], Executor]


def register_executor(name: str, factory: str | ExecutorFactory) -> None:
    """`factory` builds the executor for one command's run session: `"module:attr"` or a callable."""
    EXECUTORS.register(name, factory)


def build_executor(context: ExecutorContext) -> Executor:
    """The executor `context.config.kind` names, built for one command's run session."""
    return EXECUTORS.load(context.config.kind)(context)


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
