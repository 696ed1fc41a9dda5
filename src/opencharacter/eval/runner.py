"""One evaluation, end to end, through the engine: questions → answers → examples → verdicts → scores.

An evaluation directory is a run store like a pipeline run: rerunning resumes, nothing is re-asked.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencharacter.backends import build_backend
from opencharacter.backends.model_loading import directory_fingerprint
from opencharacter.config import BackendConfig, EvalConfig
from opencharacter.engine import Engine
from opencharacter.engine.progress import StageProgress
from opencharacter.errors import ConfigError
from opencharacter.eval import stages
from opencharacter.eval.fidelity import QUESTIONS, Embedder, fidelity_summary, rank_answers
from opencharacter.eval.records import Answer, EvalPersona, FidelityResult, Question, Verdict
from opencharacter.eval.report import write_reports
from opencharacter.eval.scores import question_scores, summarize
from opencharacter.eval.sources import question_id
from opencharacter.eval.tasks import RUBRIC_VERSION, TASKS
from opencharacter.executors import WorkItem, run_stage
from opencharacter.fileio import write_jsonl
from opencharacter.hashing import content_hash
from opencharacter.records import Record
from opencharacter.store import RunStore


class QuestionSet(Record):
    persona_id: str
    questions: list[Question]


class ExampleSet(Record):
    question_id: str
    examples: list[str]


@dataclass
class EvalResult:
    out: Path
    summary: dict[str, Any]
    report: Path


def _light(questions: list[Question]) -> list[Question]:
    seen, kept = set(), []
    for question in questions:
        if (question.persona_id, question.task) not in seen:
            seen.add((question.persona_id, question.task))
            kept.append(question)
    return kept


async def _evaluate(
    store: RunStore,
    personas: list[EvalPersona],
    given: list[Question] | None,
    model: BackendConfig,
    judges: list[BackendConfig],
    config: EvalConfig,
    show_progress: bool,
) -> dict[str, Any]:
    backends: dict[str, Any] = {}

    def engine_for(config: BackendConfig) -> Engine:
        # The same model as model-under-test and judge is loaded once (local models are big).
        key = config.model_dump_json()
        if key not in backends:
            backends[key] = build_backend(config)
        return Engine(backends[key], store, concurrency=config.concurrency, max_retries=config.max_retries)

    model_engine = engine_for(model)
    judge_engines = [engine_for(j) for j in judges]
    first_judge = judge_engines[0]
    progress = StageProgress(model_engine.stats, enabled=show_progress)
    by_id = {p.persona_id: p for p in personas}
    per_task = 1 if config.light else config.questions_per_task
    attempts = config.max_attempts
    try:
        # 1. Questions: PersonaGym's static ones, or generated for these personas by the first judge.
        if given is None:

            async def make_questions(item: WorkItem[EvalPersona], _: int) -> QuestionSet:
                made = await stages.generate_questions(
                    first_judge, item.payload, per_task, config.generation_sampling, attempts
                )
                return QuestionSet(persona_id=item.payload.persona_id, questions=made)

            items = [WorkItem(p.persona_id, f"{i:08d}", p) for i, p in enumerate(personas)]
            await run_stage(
                "questions", items, make_questions, engine=first_judge, max_attempts=attempts, progress=progress
            )
            questions = [q for s in store.records("questions", QuestionSet) for q in s.questions]
        else:
            questions = list(given)
        if config.light:
            questions = _light(questions)
        questions = [q for q in questions if q.persona_id in by_id]
        order = {q.question_id: f"{i:08d}" for i, q in enumerate(questions)}

        # 2. Answers from the model under test.
        async def make_answer(item: WorkItem[Question], _: int) -> Answer:
            question = item.payload
            return await stages.answer(
                model_engine, by_id[question.persona_id], question, config.system_prompt, config.answer_sampling
            )

        answer_items = [WorkItem(q.question_id, order[q.question_id], q) for q in questions]
        await run_stage("answers", answer_items, make_answer, engine=model_engine, max_attempts=1, progress=progress)
        answers = list(store.records("answers", Answer))

        # 3. Example answers per score level, once per question (cached across models and reruns).
        async def make_examples(item: WorkItem[Question], _: int) -> ExampleSet:
            question = item.payload
            examples = await stages.score_examples(
                first_judge, by_id[question.persona_id], question, config.generation_sampling, attempts
            )
            return ExampleSet(question_id=question.question_id, examples=examples)

        await run_stage(
            "examples", answer_items, make_examples, engine=first_judge, max_attempts=attempts, progress=progress
        )
        examples = {e.question_id: e.examples for e in store.records("examples", ExampleSet)}

        # 4. Verdicts: every judge on every answer that has its examples.
        verdict_items = []
        for judge_engine in judge_engines:
            for answer in answers:
                key = content_hash("verdict", answer.question_id, judge_engine.backend.model_id, answer.model)
                verdict_items.append(WorkItem(key, order.get(answer.question_id, "~"), (judge_engine, answer)))

        async def make_verdict(item: WorkItem[tuple[Engine, Answer]], _: int) -> Verdict:
            judge_engine, answer = item.payload
            if answer.question_id not in examples:
                return Verdict(
                    question_id=answer.question_id,
                    persona_id=answer.persona_id,
                    task=answer.task,
                    judge=judge_engine.backend.model_id,
                    score=None,
                    excluded_reason="no valid score examples for this question",
                )
            return await stages.judge(
                judge_engine, by_id[answer.persona_id], answer, examples[answer.question_id],
                config.judge_sampling, attempts,
            )  # fmt: skip

        await run_stage("verdicts", verdict_items, make_verdict, engine=first_judge, max_attempts=1, progress=progress)
        verdicts = list(store.records("verdicts", Verdict))

        # 5. Character fidelity: every character answers the same questions.
        fidelity: list[FidelityResult] = []
        if config.fidelity and len(personas) >= 2:
            shared = [
                Question(
                    question_id=question_id(p.persona, "fidelity", text),
                    persona_id=p.persona_id,
                    task="fidelity",
                    question=text,
                    source="fidelity",
                )
                for p in personas
                for text in QUESTIONS[: config.fidelity_questions]
            ]
            items = [WorkItem(q.question_id, f"{i:08d}", q) for i, q in enumerate(shared)]
            await run_stage(
                "fidelity", items, make_answer, engine=model_engine, max_attempts=1, progress=progress, label="fidelity"
            )
            fidelity_answers = list(store.records("fidelity", Answer))
            profiles = {p.persona_id: p.character or p.persona for p in personas}
            embed = await asyncio.to_thread(Embedder)
            fidelity = rank_answers(embed, profiles, [(a.question, a.persona_id, a.answer) for a in fidelity_answers])
    finally:
        progress.close()
        for backend in backends.values():
            await backend.aclose()
    return {
        "questions": questions,
        "answers": answers,
        "verdicts": verdicts,
        "fidelity": fidelity,
        "model_id": model_engine.backend.model_id,
        "judge_ids": [j.backend.model_id for j in judge_engines],
        "failures": [f.model_dump() for f in store.failures()],
    }


def evaluate(
    out: str | Path,
    personas: list[EvalPersona],
    questions: list[Question] | None,
    model: BackendConfig,
    judges: list[BackendConfig],
    config: EvalConfig,
    show_progress: bool = True,
    reuse_from: str | Path | None = None,
) -> EvalResult:
    out = Path(out)
    store = RunStore(out)
    if reuse_from is not None:
        copy_anchors(Path(reuse_from), store)
    recorded = store.get_meta("eval_model")
    wanted = {
        "backend": model.backend,
        "model": model.model,
        "base_url": model.base_url,
        "system": config.system_prompt,
        # A local model retrained in place is another model: its old answers and verdicts must not stand.
        "files": directory_fingerprint(model.model),
    }
    if recorded is not None and recorded != wanted:
        store.close()
        same_model = {**recorded, "files": None} == {**wanted, "files": None}
        what = "an earlier version (its files have changed since)" if same_model else "an evaluation"
        raise ConfigError(f"{out} holds {what} of {recorded['model']} ({recorded['system']}); use a new --out")
    store.set_meta("eval_model", wanted)
    try:
        data = asyncio.run(_evaluate(store, personas, questions, model, judges, config, show_progress))
    finally:
        store.close()
    summary = summarize(data["verdicts"])
    summary.update(
        model=data["model_id"],
        judges=data["judge_ids"],
        system_prompt=config.system_prompt,
        rubrics=RUBRIC_VERSION,
        light=config.light,
        personas=len(personas),
        questions=len(data["questions"]),
        fidelity=fidelity_summary(data["fidelity"]),
        failures=len(data["failures"]),
        config=config.model_dump(mode="json"),
    )
    write_jsonl(out / "questions.jsonl", (q.model_dump_json() for q in data["questions"]))
    write_jsonl(out / "answers.jsonl", (a.model_dump_json() for a in data["answers"]))
    write_jsonl(out / "verdicts.jsonl", (v.model_dump_json() for v in data["verdicts"]))
    write_jsonl(out / "fidelity.jsonl", (f.model_dump_json() for f in data["fidelity"]))
    (out / "summary.json").write_text(json.dumps(_nan_to_none(summary), indent=2), encoding="utf-8")
    scores = question_scores(data["verdicts"])
    by_question = {a.question_id: a for a in data["answers"]}
    persona_text = {p.persona_id: p.persona for p in personas}
    worst = sorted(((score, key) for key, score in scores.items()), key=lambda pair: pair[0])[: config.worst]
    worst_items = [
        {
            "task": task,
            "score": score,
            "persona": persona_text.get(persona, persona),
            "question": by_question[qid].question,
            "answer": by_question[qid].answer,
        }
        for score, (persona, task, qid) in worst
        if qid in by_question
    ]
    paths = write_reports(out, summary, worst_items)
    return EvalResult(out, summary, paths["html"])


def copy_anchors(source: Path, store: RunStore) -> None:
    """Reuse another evaluation's questions and score examples, so two models face identical judging."""
    if not (source / "store.sqlite").exists():
        raise ConfigError(f"--reuse-from {source}: not an evaluation directory")
    other = RunStore(source)
    try:
        for stage, model in (("questions", QuestionSet), ("examples", ExampleSet)):
            for index, record in enumerate(other.records(stage, model)):
                key = record.persona_id if isinstance(record, QuestionSet) else record.question_id
                if not store.has_record(stage, key):
                    store.put_record(stage, key, f"{index:08d}", record)
            # What failed there stays failed here: retrying would give this model different anchors.
            for failure in other.failures(stage):
                if not store.has_record(stage, failure.item_id):
                    store.put_failure(failure)
    finally:
        other.close()


def _nan_to_none(value: Any) -> Any:
    """JSON has no NaN: a task no verdict scored is null in summary.json."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


__all__ = ["TASKS", "EvalResult", "evaluate"]
