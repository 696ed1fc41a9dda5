"""`eval --protocol personagym`: PersonaGym's benchmark scored the reference's way, through the engine.

Per persona, as the fork's `code/run.py` does: every question answered; per task, batches of
`batch_size` (5) answers; per batch one score-example call per question and one verdict call per
judge. Every call goes through the engine (cache, concurrency, retries), so a rerun replays it; the
requests carry no seed (the reference sends none), so their cache keys are the same on every run.

A persona with a call that failed after the engine's retries is left out of the scores and listed
under `failures` (the reference would score the word 'Error'); the command then exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencharacter.backends import build_backend
from opencharacter.config import BackendConfig, EvalConfig
from opencharacter.engine import Engine
from opencharacter.errors import BackendError, ConfigError, FatalBackendError
from opencharacter.eval.personagym import protocol
from opencharacter.eval.personagym.checkout import Checkout, load_checkout, load_questions
from opencharacter.eval.personagym.scores import PERSONA_SCORE, batch_score, over_personas, persona_scores
from opencharacter.eval.report import protocol_label
from opencharacter.fileio import atomic_open, write_jsonl
from opencharacter.records import ChatMessage, ChatRequest, Sampling
from opencharacter.store import RunStore

PROTOCOL = "personagym"


@dataclass
class Engines:
    model: Engine
    judges: list[Engine]
    examples: Engine


def judge_record(config: BackendConfig) -> dict[str, Any]:
    """How a judge is named in summary.json: the exact model id the user gave, and where it ran."""
    return {"model": config.model, "backend": config.backend, "base_url": config.base_url}


async def _text(engine: Engine, messages: list[ChatMessage], sampling: Sampling, prompt_id: str) -> str:
    completion = await engine.generate(ChatRequest(messages=messages, sampling=sampling), prompt_id=prompt_id)
    return completion.text


async def _persona(
    checkout: Checkout,
    engines: Engines,
    config: EvalConfig,
    persona: str,
    questions: dict[str, list[str]],
) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    rows: dict[str, list[dict[str, Any]]] = {"answers": [], "examples": [], "verdicts": []}
    settings = config.personagym
    style = config.system_prompt
    answer_sampling = settings.student_sampling if style == "student" else settings.answer_sampling

    async def answer(task: str, question: str) -> str:
        messages = protocol.answer_messages(checkout, style, persona, question)
        text = await _text(engines.model, messages, answer_sampling, f"personagym-answer:{style}")
        # The reference strips the OpenCharacter route's answers, not the API route's.
        return text.strip() if style == "student" else text

    async def examples(task: str, question: str) -> str:
        messages = protocol.example_messages(checkout, persona, question, task)
        text = await _text(engines.examples, messages, settings.judge_sampling, "personagym-examples")
        return protocol.process_examples(text)

    tasks = list(questions)
    answered = await asyncio.gather(*(asyncio.gather(*(answer(t, q) for q in questions[t])) for t in tasks))
    task_batches: dict[str, list[float]] = {}
    for task, answers in zip(tasks, answered, strict=True):
        pairs = list(zip(questions[task], answers, strict=True))
        for question, text in pairs:
            rows["answers"].append({"persona": persona, "task": task, "question": question, "answer": text})
        scores = []
        size = settings.batch_size
        for index, start in enumerate(range(0, len(pairs), size)):
            batch = pairs[start : start + size]
            made = list(await asyncio.gather(*(examples(task, q) for q, _ in batch)))
            for (question, _), text in zip(batch, made, strict=True):
                rows["examples"].append({"persona": persona, "task": task, "question": question, "examples": text})
            messages = protocol.judge_messages(checkout, persona, task, batch, made)
            verdicts = await asyncio.gather(
                *(_text(judge, messages, settings.judge_sampling, "personagym-verdict") for judge in engines.judges)
            )
            averages = []
            for judge, text in zip(engines.judges, verdicts, strict=True):
                parsed = protocol.parse_scores(text)
                averages.append(protocol.modified_average(parsed))
                rows["verdicts"].append(
                    {"persona": persona, "task": task, "batch": index, "judge": judge.backend.model_id,
                     "scores": parsed, "score": averages[-1], "text": text}
                )  # fmt: skip
            scores.append(batch_score(averages))
        task_batches[task] = scores
    return persona_scores(task_batches), rows


async def _run(
    store: RunStore,
    checkout: Checkout,
    questions: dict[str, dict[str, list[str]]],
    model: BackendConfig,
    judges: list[BackendConfig],
    example_model: BackendConfig,
    config: EvalConfig,
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict[str, Any]]], list[dict[str, str]]]:
    backends: dict[str, Any] = {}

    def engine_for(settings: BackendConfig) -> Engine:
        key = settings.model_dump_json()
        if key not in backends:
            backends[key] = build_backend(settings)
        return Engine(backends[key], store, concurrency=settings.concurrency, max_retries=settings.max_retries)

    engines = Engines(engine_for(model), [engine_for(j) for j in judges], engine_for(example_model))
    rows: dict[str, list[dict[str, Any]]] = {"answers": [], "examples": [], "verdicts": []}
    per_persona: dict[str, dict[str, float]] = {}
    failures: list[dict[str, str]] = []
    try:
        results = await asyncio.gather(
            *(_persona(checkout, engines, config, p, q) for p, q in questions.items()), return_exceptions=True
        )
    finally:
        for backend in backends.values():
            await backend.aclose()
    for persona, result in zip(questions, results, strict=True):
        if isinstance(result, BackendError) and not isinstance(result, FatalBackendError):
            failures.append({"persona": persona, "error": str(result)})
        elif isinstance(result, BaseException):
            raise result
        else:
            per_persona[persona], made = result
            for name, items in made.items():
                rows[name] += items
    return per_persona, rows, failures


def evaluate_personagym(
    out: str | Path,
    model: BackendConfig,
    judges: list[BackendConfig],
    config: EvalConfig,
    example_model: BackendConfig | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score `model` on the checkout's benchmark; writes summary.json, report.md and the *.jsonl files."""
    settings = config.personagym
    if settings.checkout is None:
        raise ConfigError("the personagym protocol needs a checkout: --personagym PATH (a clone of PersonaGym)")
    if not judges:
        raise ConfigError(
            "the personagym protocol reports no PersonaScore without a named judge: "
            "--judge gpt-4o-2024-08-06 (the paper's), or eval.judges in the config"
        )
    if config.system_prompt == "ours":
        raise ConfigError("--system-prompt with the personagym protocol: bare (API and base models) or student")
    checkout = load_checkout(settings.checkout)
    personas, questions = load_questions(checkout, settings.questions)
    personas = personas[:limit] if limit else personas
    chosen = {p: {t: qs[:1] if config.light else qs for t, qs in questions[p].items()} for p in personas}
    out = Path(out)
    store = RunStore(out)
    try:
        per_persona, rows, failures = asyncio.run(
            _run(store, checkout, chosen, model, judges, example_model or judges[0], config)
        )
    finally:
        store.close()
    scores = over_personas(per_persona)
    summary = {
        "protocol": PROTOCOL,
        "model": model.model,
        "judges": [judge_record(j) for j in judges],
        "example_model": judge_record(example_model or judges[0]),
        "checkout": {
            "path": str(checkout.root.resolve()),
            "commit": checkout.commit,
            "questions": settings.questions,
            "examples_template": checkout.examples_file,
        },
        "light": config.light,
        "system_prompt": config.system_prompt,
        "personas": len(per_persona),
        "questions": sum(len(qs) for p in per_persona for qs in chosen[p].values()),
        "persona_score": scores.get(PERSONA_SCORE, {}).get("mean"),
        "scores": scores,
        "per_persona": per_persona,
        "failures": failures,
        "config": config.model_dump(mode="json"),
    }
    for name in ("answers", "examples", "verdicts"):
        write_jsonl(out / f"{name}.jsonl", (json.dumps(r, ensure_ascii=False) for r in rows[name]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    with atomic_open(out / "report.md") as stream:
        stream.write(report_markdown(summary))
    return summary


def report_lines(summary: dict[str, Any]) -> list[str]:
    """What average_score.py prints, key by key: `key (n/N): mean (std)`."""
    total = summary["personas"] + len(summary["failures"])
    return [f"{key} ({s['personas']}/{total}): {s['mean']} ({s['std']})" for key, s in summary["scores"].items()]


def report_markdown(summary: dict[str, Any]) -> str:
    judges = ", ".join(j["model"] for j in summary["judges"])
    score = summary["persona_score"]
    lines = [
        f"# {summary['model']}: {protocol_label(summary)}",
        "",
        f"Judges: {judges}; score examples: {summary['example_model']['model']}; "
        f"system prompt: {summary['system_prompt']}; {summary['personas']} personas, {summary['questions']} questions.",
        "",
        f"**PersonaScore{'-L' if summary['light'] else ''}: {score:.2f}**"
        if score is not None
        else "No persona scored.",
        "",
        "| task | mean | std | personas |",
        "|---|---|---|---|",
        *(f"| {k} | {s['mean']:.2f} | {s['std']:.2f} | {s['personas']} |" for k, s in summary["scores"].items()),
        "",
    ]
    if summary["failures"]:
        lines += [f"{len(summary['failures'])} personas failed (not scored):", ""]
        lines += [f"- {f['persona']}: {f['error']}" for f in summary["failures"]] + [""]
    return "\n".join(lines)


__all__ = ["PROTOCOL", "evaluate_personagym", "report_lines", "report_markdown"]
