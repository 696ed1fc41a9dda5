"""One evaluation, end to end, through the engine: questions → answers → examples → verdicts → scores.

An evaluation directory is a run store like a pipeline run: rerunning resumes, nothing is re-asked.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencharacter.backends import backend_decoding, build_backend
from opencharacter.config import BackendConfig, EvalConfig
from opencharacter.engine import Engine
from opencharacter.errors import ConfigError, MissingDependencyError
from opencharacter.eval import copying, stages
from opencharacter.eval.fidelity import QUESTIONS, copy_summary, fidelity_summary, rank_answers
from opencharacter.eval.lexical import LexicalScorer
from opencharacter.eval.progress import EvalProgress
from opencharacter.eval.records import Answer, EvalPersona, FidelityResult, Question, Verdict
from opencharacter.eval.report import write_reports
from opencharacter.eval.scores import question_scores, summarize
from opencharacter.eval.sources import question_id
from opencharacter.eval.tasks import RUBRIC_VERSION, TASKS
from opencharacter.executors import WorkItem, run_stage
from opencharacter.fileio import write_jsonl
from opencharacter.hashing import content_hash
from opencharacter.models.embedded import EMBEDDED_NAME
from opencharacter.models.embedder import Embedder, embedder_path
from opencharacter.models.loading import directory_fingerprint
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


def rank_fidelity(profiles: dict[str, str], answers: list[Answer]) -> list[FidelityResult]:
    """Both fidelity signals for the stored answers, on the answers as given and with the spans
    copied from the answerer's own profile removed, plus each answer's copy measures: pure
    computation, no model call, so a rerun of a finished evaluation (or an older one, made before
    the lexical signal or the copy measures) fills them in for free."""
    triples = [(a.question, a.persona_id, a.answer) for a in answers]
    masked = [(q, p, copying.mask_copied(text, profiles[p])) for q, p, text in triples]
    embedder, lexical_scorer = Embedder(), LexicalScorer()
    embedding = rank_answers(embedder, profiles, triples)
    lexical = rank_answers(lexical_scorer, profiles, triples)
    embedding_masked = rank_answers(embedder, profiles, masked)
    lexical_masked = rank_answers(lexical_scorer, profiles, masked)
    results = []
    for (_, persona, text), e, x, em, xm in zip(
        triples, embedding, lexical, embedding_masked, lexical_masked, strict=True
    ):
        measure = copying.measure(text, profiles[persona])
        update = {
            "lexical_rank": x.rank,
            "masked_rank": em.rank,
            "masked_lexical_rank": xm.rank,
            "copy_rate": round(measure.copy_rate, 6),
            "opens_with_profile": measure.opens_with_profile,
        }
        results.append(e.model_copy(update=update))
    return results


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
    progress = EvalProgress(model_engine.stats, enabled=show_progress)
    by_id = {p.persona_id: p for p in personas}
    # (stage, item id) of everything this evaluation asks for: the summary covers these and only
    # these, although the store may hold other evaluations' items (another judge, full vs light).
    asked: set[tuple[str, str]] = set()
    judge_prompt = stages.judge_prompt_id()
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
            asked.update(("questions", item.id) for item in items)
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
        asked.update((stage, item.id) for item in answer_items for stage in ("answers", "examples"))
        await run_stage("answers", answer_items, make_answer, engine=model_engine, max_attempts=1, progress=progress)
        wanted = set(order)
        answers = [a for a in store.records("answers", Answer) if a.question_id in wanted]

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
        examples = {e.question_id: e.examples for e in store.records("examples", ExampleSet) if e.question_id in wanted}

        # 4. Verdicts: every judge on every answer that has its examples.
        verdict_items = []
        for judge_engine in judge_engines:
            for answer in answers:
                # The judge prompt (template and rubric versions) is part of a verdict's identity:
                # a verdict made under another prompt is another measurement, not a cached one.
                key = content_hash(
                    "verdict", answer.question_id, judge_engine.backend.model_id, answer.model, judge_prompt
                )
                verdict_items.append(WorkItem(key, order.get(answer.question_id, "~"), (judge_engine, answer)))
        asked.update(("verdicts", item.id) for item in verdict_items)

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
                    prompt=judge_prompt,
                )
            return await stages.judge(
                judge_engine, by_id[answer.persona_id], answer, examples[answer.question_id],
                config.judge_sampling, attempts,
            )  # fmt: skip

        await run_stage("verdicts", verdict_items, make_verdict, engine=first_judge, max_attempts=1, progress=progress)
        judge_ids = {j.backend.model_id for j in judge_engines}
        verdicts = [
            v
            for v in store.records("verdicts", Verdict)
            if v.question_id in wanted and v.judge in judge_ids and v.prompt == judge_prompt
        ]

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
            asked.update(("fidelity", item.id) for item in items)
            await run_stage(
                "fidelity", items, make_answer, engine=model_engine, max_attempts=1, progress=progress, label="fidelity"
            )
            shared_ids = {q.question_id for q in shared}
            fidelity_answers = [a for a in store.records("fidelity", Answer) if a.question_id in shared_ids]
            profiles = {p.persona_id: p.character or p.persona for p in personas}
            progress.note(f"fidelity: loading the embedding model and ranking {len(fidelity_answers)} answers")
            fidelity = await asyncio.to_thread(rank_fidelity, profiles, fidelity_answers)
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
        "failures": [f.model_dump() for f in store.failures() if (f.stage, f.item_id) in asked],
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
    check_dependencies(model, judges, config, len(personas))
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
        # Answers decoded another way (an older version of the backend) are another model's too.
        **({"decoding": decoding} if (decoding := backend_decoding(model)) else {}),
    }
    if recorded is not None and recorded != wanted:
        store.close()
        changed = {key for key in recorded.keys() | wanted.keys() if recorded.get(key) != wanted.get(key)}
        what = {
            frozenset({"files"}): "an earlier version (its files have changed since)",
            frozenset({"decoding"}): "answers decoded by an older version",
        }.get(frozenset(changed), "an evaluation")
        raise ConfigError(f"{out} holds {what} of {recorded['model']} ({recorded['system']}); use a new --out")
    store.set_meta("eval_model", wanted)
    try:
        data = asyncio.run(_evaluate(store, personas, questions, model, judges, config, show_progress))
    finally:
        store.close()
    summary = summarize(data["verdicts"])
    summary.update(
        protocol="opencharacter",
        # The embedded model judging (no judge named): the demo's setting, labelled so wherever shown.
        demo_judge=all(j.model == EMBEDDED_NAME for j in judges),
        model=data["model_id"],
        judges=data["judge_ids"],
        judge_prompt=stages.judge_prompt_id(),
        system_prompt=config.system_prompt,
        rubrics=RUBRIC_VERSION,
        light=config.light,
        personas=len(personas),
        questions=len(data["questions"]),
        fidelity=fidelity_summary(data["fidelity"], "embedding"),
        fidelity_lexical=fidelity_summary(data["fidelity"], "lexical"),
        fidelity_masked=fidelity_summary(data["fidelity"], "embedding_masked"),
        fidelity_lexical_masked=fidelity_summary(data["fidelity"], "lexical_masked"),
        profile_copy=copy_summary(data["fidelity"]),
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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module in sys.modules without a spec: present
        return True


def check_dependencies(model: BackendConfig, judges: list[BackendConfig], config: EvalConfig, personas: int) -> None:
    """Name the missing extra before the first call, not after an hour of judging.

    The report's radar chart needs matplotlib, fidelity needs torch, transformers and the embedding
    model (embedding signal) and bm25s (lexical signal); a local model under test or judge needs the
    `local` extra (its backend says so itself).
    """
    needed = ["matplotlib"]
    if config.fidelity and personas >= 2:
        needed += ["torch", "transformers", "bm25s"]
    for module in needed:
        if not _installed(module):
            raise MissingDependencyError(module, "eval")
    if config.fidelity and personas >= 2:
        embedder_path()  # raises with the exact pip command when the embedding model is missing
    for backend in [model, *judges]:
        if backend.backend == "transformers" and not _installed("transformers"):
            raise MissingDependencyError("transformers", "local")


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
