"""The one place for LLM calls: concurrency, retries, structured output, caching, resume and progress."""

from opencharacter.engine.engine import Engine, EngineStats
from opencharacter.engine.runner import StageResult, WorkItem, run_stage

__all__ = ["Engine", "EngineStats", "StageResult", "WorkItem", "run_stage"]
