"""The recipe's PersonaGym benchmark: base, every student and the user's anchor models, one PScore table.

Beside the held-out-character evaluation (our protocol, on characters with profiles), the recipe
scores each model on PersonaGym's own 200 static personas with the PersonaGym protocol
(`eval.benchmark: personagym`, `eval.personagym.checkout`), so its numbers are the kind the paper
reports (PScore-L with `eval.light`). The base and the students answer with one system prompt
(`personagym.student_prompt`), the anchors (e.g. GPT-4o) with PersonaGym's persona prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opencharacter.config import BackendConfig, RecipeConfig
from opencharacter.errors import ConfigError
from opencharacter.models.embedded import EMBEDDED_NAME


def benchmark_judges(config: RecipeConfig) -> list[BackendConfig]:
    """`eval.judges`, else the recipe's `judges`; never the embedded default (no PersonaScore without a name)."""
    judges = list(config.eval.judges or config.judges)
    return [j for j in judges if j.model != EMBEDDED_NAME]


def check_benchmark(config: RecipeConfig) -> None:
    """Before any training: the checkout reads and a judge is named, so a long run cannot end in a typo."""
    if config.eval.benchmark is None:
        return
    from opencharacter.eval.personagym.checkout import load_checkout, load_questions

    settings = config.eval.personagym
    if settings.checkout is None:
        raise ConfigError("eval.benchmark: personagym needs eval.personagym.checkout (a clone of PersonaGym)")
    load_questions(load_checkout(settings.checkout), settings.questions)
    if not benchmark_judges(config):
        raise ConfigError(
            "eval.benchmark: personagym reports no PersonaScore without a named judge: set eval.judges "
            "(e.g. {backend: openai, model: gpt-4o-2024-08-06})"
        )


def score_benchmark(config: RecipeConfig, models: dict[str, str], out: Path) -> dict[str, dict[str, Any]] | None:
    """label → summary.json of its benchmark evaluation (out/benchmark/<label>); None without a benchmark."""
    if config.eval.benchmark is None:
        return None
    from opencharacter.eval.personagym.runner import evaluate_personagym

    judges = benchmark_judges(config)
    settings = config.eval.personagym
    own = config.eval.model_copy(update={"system_prompt": settings.student_prompt})
    runs: list[tuple[str, BackendConfig, Any]] = [
        (label, config.student_backend.model_copy(update={"model": model}), own) for label, model in models.items()
    ]
    bare = config.eval.model_copy(update={"system_prompt": "bare"})
    runs += [(anchor.model, anchor, bare) for anchor in settings.anchors]
    example_model = config.eval.example_model
    return {
        label: evaluate_personagym(out / "benchmark" / _safe(label), backend, judges, eval_config, example_model)
        for label, backend, eval_config in runs
    }


def _safe(label: str) -> str:
    return label.replace("/", "_")


def benchmark_markdown(summaries: dict[str, dict[str, Any]] | None) -> str:
    """The PScore table: one row per model, PersonaScore (mean ± population std over personas) and the tasks."""
    if not summaries:
        return ""
    from opencharacter.eval.report import protocol_label

    first = next(iter(summaries.values()))
    name = "PScore-L" if first["light"] else "PScore"
    tasks = [key for key in first["scores"] if key != "PersonaScore"]
    judges = ", ".join(j["model"] for j in first["judges"])
    lines = [
        f"## PersonaGym benchmark ({name})",
        "",
        f"{protocol_label(first)}, {first['personas']} of PersonaGym's static personas; judges: {judges}.",
        "",
        "| model | system prompt | " + name + " | " + " | ".join(tasks) + " | personas |",
        "|" + "---|" * (4 + len(tasks)),
    ]
    for label, summary in summaries.items():
        scores = summary["scores"]
        overall = scores.get("PersonaScore")
        cell = f"{overall['mean']:.2f} ± {overall['std']:.2f}" if overall else "n/a"
        cells = [label, summary["system_prompt"], cell, *(_mean(scores.get(t)) for t in tasks)]
        failed = f" ({len(summary['failures'])} failed)" if summary["failures"] else ""
        lines.append("| " + " | ".join(cells) + f" | {summary['personas']}{failed} |")
    lines += [
        "",
        "Comparable with the paper's PScore-L (OpenCharacter-8B 4.66, LLaMA-3-8B-Instruct 4.62, GPT-4o 4.60) "
        "only on the authors' fork with its judge gpt-4o-2024-08-06 and eval.light: true.",
        "",
    ]
    return "\n".join(lines)


def _mean(stats: dict[str, Any] | None) -> str:
    return f"{stats['mean']:.2f}" if stats else "n/a"


__all__ = ["benchmark_markdown", "check_benchmark", "score_benchmark"]
