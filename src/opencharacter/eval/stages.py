"""Evaluation steps as engine calls: settings → questions, answers, score examples, verdicts.

Each is cached and resumable like the synthesis stages: the engine replays finished calls.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from opencharacter.chat.characters import NO_PROFILE
from opencharacter.engine import Engine
from opencharacter.errors import ParseError
from opencharacter.eval.records import Answer, EvalPersona, Question, Verdict
from opencharacter.eval.sources import question_id
from opencharacter.eval.tasks import RUBRIC_VERSION, TASK_BY_NAME, TASKS, Task
from opencharacter.prompts import load_prompt
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.records import ChatMessage, ChatRequest, Completion, Sampling

_SCORE = re.compile(r"score\s*(?:\*\*)?\s*[:=]?\s*(?:\*\*)?\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
MIN_EXAMPLE_CHARS = 20


def _string_list_schema(key: str, count: int, min_chars: int = 1) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            key: {
                "type": "array",
                "items": {"type": "string", "minLength": min_chars, "maxLength": 600},
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": [key],
        "additionalProperties": False,
    }


def _parse_list(key: str, count: int, min_chars: int = 1, min_words: int = 1):
    def parse(completion: Completion) -> list[str]:
        try:
            items = json.loads(completion.text)[key]
        except (ValueError, KeyError, TypeError):
            raise ParseError(f"expected JSON {{{key!r}: [...]}}", raw=completion.text) from None
        if not isinstance(items, list) or len(items) != count:
            raise ParseError(f"expected {count} {key}", raw=completion.text)
        clean = [str(item).strip() for item in items]
        if any(len(item) < min_chars or len(item.split()) < min_words for item in clean):
            raise ParseError(
                f"a {key[:-1]} is shorter than {min_chars} characters / {min_words} words", raw=completion.text
            )
        return clean

    return parse


async def generate_questions(
    engine: Engine, persona: EvalPersona, per_task: int, sampling: Sampling, max_attempts: int
) -> list[Question]:
    """PersonaGym's recipe for new personas: choose revealing settings, then questions per task."""
    settings_prompt = load_prompt("eval_settings")
    settings, _ = await engine.generate_parsed(
        ChatRequest(
            messages=settings_prompt.render(persona=persona.persona, count=3),
            sampling=sampling,
            response_schema=_string_list_schema("settings", 3, 10),
        ),
        _parse_list("settings", 3, 10),
        prompt_id=settings_prompt.id,
        max_attempts=max_attempts,
    )
    template = load_prompt("eval_questions")

    async def ask(task: Task) -> list[Question]:
        texts, _ = await engine.generate_parsed(
            ChatRequest(
                messages=template.render(
                    persona=persona.persona, settings=settings, rubric=task.rubric(), count=per_task
                ),
                sampling=sampling,
                response_schema=_string_list_schema("questions", per_task, 10),
            ),
            _parse_list("questions", per_task, 10, 3),
            prompt_id=f"{template.id}+{RUBRIC_VERSION}",
            max_attempts=max_attempts,
        )
        return [
            Question(
                question_id=question_id(persona.persona, task.name, text),
                persona_id=persona.persona_id,
                task=task.name,
                question=text,
                source="generated",
            )
            for text in texts
        ]

    # The tasks' calls are independent given the settings, so they are asked at once: a local backend
    # then batches them with the other personas' (8 personas: one batch of 40 instead of five of 8).
    # Every call is waited for before a failure is raised, so finished calls are cached and a retry
    # of this persona replays them instead of racing calls still in flight.
    results = await asyncio.gather(*(ask(task) for task in TASKS), return_exceptions=True)
    questions: list[Question] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        questions += result
    return questions


def system_prompt(persona: EvalPersona, style: str) -> str:
    """`ours`: the training template (persona + profile); `bare`: PersonaGym's 'adopt the identity' prompt."""
    if style == "bare":
        return load_prompt("eval_persona_system").render_block("system", persona=persona.persona)
    return render_system_prompt(persona.persona, persona.character or NO_PROFILE)


async def answer(engine: Engine, persona: EvalPersona, question: Question, style: str, sampling: Sampling) -> Answer:
    system = system_prompt(persona, style)
    completion = await engine.generate(
        ChatRequest(
            messages=[ChatMessage(role="system", content=system), ChatMessage(role="user", content=question.question)],
            sampling=sampling,
        ),
        prompt_id=f"eval_answer:{style}",
    )
    return Answer(
        question_id=question.question_id,
        persona_id=persona.persona_id,
        task=question.task,
        question=question.question,
        answer=completion.text.strip(),
        model=engine.backend.model_id,
        system_prompt=system,
    )


async def score_examples(
    engine: Engine, persona: EvalPersona, question: Question, sampling: Sampling, max_attempts: int
) -> list[str]:
    """Five example answers (scores 1..5) for one question, each checked to be a real answer.

    PersonaGym's code once fed the judge one-character "examples"; here an example shorter than
    20 characters or 4 words is rejected and regenerated.
    """
    template = load_prompt("eval_examples")
    task = TASK_BY_NAME[question.task]
    examples, _ = await engine.generate_parsed(
        ChatRequest(
            messages=template.render(persona=persona.persona, question=question.question, rubric=task.rubric()),
            sampling=sampling,
            response_schema=_string_list_schema("examples", 5, MIN_EXAMPLE_CHARS),
        ),
        _parse_list("examples", 5, MIN_EXAMPLE_CHARS, 4),
        prompt_id=f"{template.id}+{RUBRIC_VERSION}",
        max_attempts=max_attempts,
    )
    return examples


VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string", "minLength": 1, "maxLength": 240},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["rationale", "score"],
    "additionalProperties": False,
}


def parse_verdict(completion: Completion) -> tuple[int, str]:
    """The score from a structured verdict, else from the last 'Score: N' line of free text.

    The judge is asked for JSON (schema-constrained where the backend supports it); judges that
    ignore response_format still end with 'Score: N', which is parsed the same way. N must be an
    integer from 1 to 5; anything else raises, so the engine retries and finally excludes it.
    """
    try:
        data = json.loads(completion.text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "score" in data:
        score = data["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score != int(score) or not 1 <= score <= 5:
            raise ParseError(f"verdict score {score!r} is not an integer from 1 to 5", raw=completion.text)
        return int(score), str(data.get("rationale", "")).strip()
    matches = _SCORE.findall(completion.text)
    if not matches:
        raise ParseError("verdict has no 'Score: N'", raw=completion.text)
    value = float(matches[-1])
    if value != int(value) or not 1 <= value <= 5:
        raise ParseError(f"verdict score {matches[-1]} is not an integer from 1 to 5", raw=completion.text)
    return int(value), completion.text.strip()


def judge_prompt_id() -> str:
    """The judge prompt's identity (template version + rubric version), recorded on every verdict."""
    return f"{load_prompt('eval_judge').id}+{RUBRIC_VERSION}"


async def judge(
    engine: Engine,
    persona: EvalPersona,
    item: Answer,
    examples: list[str],
    sampling: Sampling,
    max_attempts: int,
) -> Verdict:
    template = load_prompt("eval_judge")
    task = TASK_BY_NAME[item.task]
    request = ChatRequest(
        messages=template.render(
            persona=persona.persona, rubric=task.rubric(), examples=examples, question=item.question, answer=item.answer
        ),
        sampling=sampling,
        response_schema=VERDICT_SCHEMA,
        schema_name="verdict",
    )
    prompt = f"{template.id}+{RUBRIC_VERSION}"
    base = {
        "prompt": prompt,
        "question_id": item.question_id,
        "persona_id": item.persona_id,
        "task": item.task,
        "judge": engine.backend.model_id,
    }
    try:
        (score, rationale), _ = await engine.generate_parsed(
            request, parse_verdict, prompt_id=prompt, max_attempts=max_attempts
        )
    except ParseError as exc:
        return Verdict(**base, score=None, excluded_reason=str(exc), rationale=exc.raw[:500])
    return Verdict(**base, score=score, rationale=rationale[-1500:])
