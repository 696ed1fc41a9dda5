"""PersonaGym's aggregation, in the reference's order of operations (so its printed numbers match).

Per persona (`code/run.py`): a batch's score is the mean over judges of each judge's modified
average; a task's score is the mean over its batches; PersonaScore is the tasks' sum divided by
their count. Over personas (`code/average_score.py`): numpy's mean and population std of each key.
"""

from __future__ import annotations

from typing import Any

PERSONA_SCORE = "PersonaScore"


def batch_score(judge_averages: list[float]) -> float:
    return sum(judge_averages) / len(judge_averages)


def persona_scores(task_batches: dict[str, list[float]]) -> dict[str, float]:
    """task → its batches' scores, in the question file's task order; adds PersonaScore."""
    scores: dict[str, float] = {task: sum(batches) / len(batches) for task, batches in task_batches.items()}
    overall: float = 0
    for task in scores:
        overall += scores[task]
    overall /= len(scores)
    return {**scores, PERSONA_SCORE: overall}


def over_personas(per_persona: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """key → mean, population std and count over the personas that have it, as average_score.py prints."""
    import numpy as np  # a dependency of datasets, so always installed

    values: dict[str, list[float]] = {}
    for scores in per_persona.values():
        for key, value in scores.items():
            values.setdefault(key, []).append(value)
    return {
        key: {"mean": float(np.average(v)), "std": float(np.std(v)), "personas": len(v)} for key, v in values.items()
    }


__all__ = ["PERSONA_SCORE", "batch_score", "over_personas", "persona_scores"]
