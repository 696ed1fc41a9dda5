"""Aggregation: question → task score per persona → PersonaScore; mean and spread over personas.

Several judges are averaged per question; an excluded verdict is dropped from the mean and counted,
never scored as anything.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from typing import Any

from opencharacter.eval.records import Verdict
from opencharacter.eval.tasks import TASKS


def question_scores(verdicts: list[Verdict]) -> dict[tuple[str, str, str], float]:
    """(persona_id, task, question_id) → mean over the judges whose verdict counted."""
    grouped: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for verdict in verdicts:
        if verdict.score is not None:
            grouped[(verdict.persona_id, verdict.task, verdict.question_id)].append(verdict.score)
    return {key: statistics.fmean(values) for key, values in grouped.items()}


def persona_task_scores(verdicts: list[Verdict]) -> dict[str, dict[str, float]]:
    """persona_id → task → mean over that persona's questions of the task; plus 'PersonaScore'."""
    by_task: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (persona, task, _), score in question_scores(verdicts).items():
        by_task[persona][task].append(score)
    result: dict[str, dict[str, float]] = {}
    for persona, tasks in by_task.items():
        scores = {task: statistics.fmean(values) for task, values in tasks.items()}
        scores["PersonaScore"] = statistics.fmean(scores.values())
        result[persona] = scores
    return result


def summarize(verdicts: list[Verdict]) -> dict[str, Any]:
    per_persona = persona_task_scores(verdicts)
    table: dict[str, dict[str, float | int]] = {}
    for name in [*(t.name for t in TASKS), "PersonaScore"]:
        values = [scores[name] for scores in per_persona.values() if name in scores]
        table[name] = {
            "mean": statistics.fmean(values) if values else float("nan"),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "personas": len(values),
        }
    return {
        "scores": table,
        "per_persona": per_persona,
        "verdicts": len(verdicts),
        "excluded_verdicts": sum(v.score is None for v in verdicts),
    }


def bootstrap_delta(
    before: dict[str, float], after: dict[str, float], samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean difference (after − before) over personas with a 95% percentile bootstrap interval.

    Paired over the personas both evaluations share; independent resampling when they share none.
    """
    rng = random.Random(seed)
    shared = sorted(set(before) & set(after))
    if shared:
        diffs = [after[p] - before[p] for p in shared]
        point = statistics.fmean(diffs)
        means = [statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(samples)]
    else:
        a, b = list(before.values()), list(after.values())
        if not a or not b:
            return float("nan"), float("nan"), float("nan")
        point = statistics.fmean(b) - statistics.fmean(a)
        means = [
            statistics.fmean(rng.choices(b, k=len(b))) - statistics.fmean(rng.choices(a, k=len(a)))
            for _ in range(samples)
        ]
    means.sort()
    return point, means[int(0.025 * samples)], means[min(samples - 1, int(0.975 * samples))]
