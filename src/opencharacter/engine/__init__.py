"""The one place for LLM calls: concurrency, retries, structured output, caching and progress.

Running a stage over many items (resume, workers, failures) is the executors' job (`executors/`).
"""

from opencharacter.engine.engine import Engine, EngineStats

__all__ = ["Engine", "EngineStats"]
