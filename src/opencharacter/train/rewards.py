"""GRPO's rewards: named, weighted terms (`train.grpo.rewards`), each a plain callable in TRL's shape.

A reward function takes the sampled answers and the prompt rows' columns and returns one float per
answer (or None: "no score", which TRL leaves out of the weighted sum):

    def reward(completions, character_id, profile, question, **kwargs) -> list[float | None]

The built-ins are registered in `opencharacter.registry.REWARDS` by name; a factory there receives
the reward's own settings (the spec's keys beyond name/weight/label) and a `RewardContext`. A user adds
one the same way:

    from opencharacter.registry import REWARDS

    def brevity(settings, context):
        limit = settings.get("words", 60)
        def reward(completions, **_):
            return [min(1.0, limit / max(1, len(answer_text(c).split()))) for c in completions]
        return reward

    REWARDS.register("brevity", brevity)   # or "my_module:brevity" in a plug-in

Why these four: a fidelity reward alone teaches the model to recite its profile (an answer that
restates the profile ranks it first), so fidelity is computed on the answer with profile-copied spans
masked (`eval/copying.py`), and copying itself is penalised; the judge adds a rubric's view, and
`format` the filters' rules.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from opencharacter.config.backend import BackendConfig
from opencharacter.config.base import Config, validation_message
from opencharacter.errors import BackendError, ConfigError
from opencharacter.eval import copying
from opencharacter.filters.junk import non_language, template_leftover
from opencharacter.filters.rules import _BREAKS
from opencharacter.hashing import content_hash
from opencharacter.records import Sampling

RewardFunc = Callable[..., list[float | None]]


@dataclass
class RewardContext:
    """What every reward may need beyond the answers: all characters' profiles (the distractor pool),
    the seed, where the judge caches its calls, and the judge a recipe defaults to."""

    profiles: dict[str, str]
    seed: int = 0
    cache_dir: Path | None = None
    default_judge: BackendConfig | None = None
    failures: dict[str, int] = field(default_factory=dict)
    """Failed reward calls by reward label (the judge's), for the training report."""


def answer_text(completion: Any) -> str:
    """The answer of a TRL completion: conversational (a list of messages) or plain text."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion if m.get("role") == "assistant")


def _settings(model: type[Config], given: dict[str, Any], reward: str) -> Any:
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, f"grpo reward {reward!r}")) from None


def _timed(func: RewardFunc, name: str) -> RewardFunc:
    """`func` named `name` (what TRL logs: rewards/<name>/mean), logging its seconds per step as
    `reward_seconds/<name>`: the cost of each reward, beside generation's, in the training log."""

    def reward(*args: Any, **kwargs: Any) -> list[float | None]:
        started = time.perf_counter()
        values = func(*args, **kwargs)
        if kwargs.get("log_metric") is not None:
            kwargs["log_metric"](f"reward_seconds/{name}", time.perf_counter() - started)
        return values

    reward.__name__ = name
    return reward


# --- fidelity --------------------------------------------------------------------------------------


class FidelitySettings(Config):
    signal: Literal["embedding", "lexical", "both"] = Field(
        "embedding", description="MiniLM cosine, BM25, or the mean of both reciprocal ranks."
    )
    distractors: int = Field(15, ge=1, description="Other characters' profiles ranked against the own one (seeded).")
    masked: bool = Field(True, description="Rank the answer with profile-copied spans removed (copying.mask_copied).")
    n: int = Field(copying.DEFAULT_N, ge=2, description="Word n-gram length that counts as copied.")


def fidelity_candidates(character: str, pool: list[str], count: int, seed: int) -> list[str]:
    """The own character first, then `count` seeded distractors: the same set on every step, so the
    reward of one character's answers is comparable across its group and across steps."""
    from opencharacter.selection.scoring import distractors

    return [character, *distractors(f"grpo:{character}", character, sorted(pool), count, seed)]


def reciprocal_ranks(
    scorer: Any, profiles: dict[str, str], rows: list[tuple[str, str, str]], count: int, seed: int
) -> list[float]:
    """1/rank of each (question, character, answer)'s own profile among its candidates."""
    from opencharacter.eval.fidelity import rank_answers

    out = [0.0] * len(rows)
    by_character: dict[str, list[int]] = {}
    for index, (_, character, _) in enumerate(rows):
        by_character.setdefault(character, []).append(index)
    for character, indices in by_character.items():
        ids = fidelity_candidates(character, list(profiles), count, seed)
        ranked = rank_answers(scorer, {i: profiles[i] for i in ids}, [rows[i] for i in indices])
        for index, result in zip(indices, ranked, strict=True):
            out[index] = 1.0 / result.rank
    return out


def _content_words(text: str) -> list[str]:
    """Words beyond function words ("i am a"): what an answer says once names and copies are gone."""
    return [w for w in copying.words(text) if w not in copying._FUNCTION_WORDS and not w.isdigit()]


def fidelity_reward(settings: dict[str, Any], context: RewardContext) -> RewardFunc:
    from opencharacter.eval.fidelity import _name, without_names

    config: FidelitySettings = _settings(FidelitySettings, settings, "fidelity")
    scorers: dict[str, Any] = {}
    names = [n for n in (_name(p) for p in context.profiles.values()) if n]

    def scorer(signal: str) -> Any:
        if signal not in scorers:
            if signal == "embedding":
                from opencharacter.models.embedder import Embedder

                scorers[signal] = Embedder()
            else:
                from opencharacter.eval.lexical import LexicalScorer

                scorers[signal] = LexicalScorer()
        return scorers[signal]

    def fidelity(completions: list[Any], character_id: list[str], question: list[str], **_: Any) -> list[float | None]:
        rows = []
        for completion, character, asked in zip(completions, character_id, question, strict=True):
            text = answer_text(completion)
            if config.masked:
                text = copying.mask_copied(text, context.profiles[character], config.n)
            rows.append((asked, character, text))
        signals = ["embedding", "lexical"] if config.signal == "both" else [config.signal]
        per_signal = [
            reciprocal_ranks(scorer(s), context.profiles, rows, config.distractors, context.seed) for s in signals
        ]
        # Nothing left once copied spans and names are gone: no evidence of the character, no reward
        # (evaluation ranks such an answer at chance; a reward at chance would still pay for reciting).
        return [
            0.0 if not _content_words(without_names(text, names)) else sum(values) / len(values)
            for (_, _, text), values in zip(rows, zip(*per_signal, strict=True), strict=True)
        ]

    return fidelity


# --- copy_penalty ----------------------------------------------------------------------------------


class CopySettings(Config):
    n: int = Field(copying.DEFAULT_N, ge=2, description="Word n-gram length that counts as copied.")
    opening: float = Field(0.5, ge=0, description="Added to the penalty when the first sentence recites the profile.")


def copy_penalty(answer: str, profile: str, n: int = copying.DEFAULT_N, opening: float = 0.5) -> float:
    """Copy rate (0..1) plus `opening` when the answer opens by reciting the profile: 0 = nothing copied."""
    measure = copying.measure(answer, profile, n)
    return measure.copy_rate + (opening if measure.opens_with_profile else 0.0)


def copy_penalty_reward(settings: dict[str, Any], context: RewardContext) -> RewardFunc:
    config: CopySettings = _settings(CopySettings, settings, "copy_penalty")

    def copy_reward(completions: list[Any], profile: list[str], **_: Any) -> list[float | None]:
        # A reward is "higher is better": the penalty enters negated (a positive weight subtracts it).
        return [
            -copy_penalty(answer_text(c), p, config.n, config.opening)
            for c, p in zip(completions, profile, strict=True)
        ]

    return copy_reward


# --- format ----------------------------------------------------------------------------------------


class FormatSettings(Config):
    min_chars: int = Field(20, ge=0, description="Shorter answers fail (the filters' `min_answer_chars`).")
    max_chars: int = Field(4000, ge=1, description="Longer answers fail.")


def format_problems(answer: str, min_chars: int, max_chars: int) -> list[str]:
    """The filters' rules an answer breaks: out of character, template leftovers, letter soup, length."""
    problems = []
    if match := _BREAKS.search(answer):
        problems.append(f"breaks character: {match.group(0)!r}")
    if leftover := template_leftover(answer):
        problems.append(f"template leftover {leftover!r}")
    if soup := non_language(answer):
        problems.append(soup)
    if not min_chars <= len(answer.strip()) <= max_chars:
        problems.append(f"length {len(answer.strip())} outside [{min_chars}, {max_chars}]")
    return problems


def format_reward(settings: dict[str, Any], context: RewardContext) -> RewardFunc:
    config: FormatSettings = _settings(FormatSettings, settings, "format")

    def format_ok(completions: list[Any], **_: Any) -> list[float | None]:
        return [
            0.0 if format_problems(answer_text(c), config.min_chars, config.max_chars) else 1.0 for c in completions
        ]

    return format_ok


# --- judge -----------------------------------------------------------------------------------------


class JudgeSettings(Config):
    judge: BackendConfig | None = Field(None, description="The judge backend (default: the recipe's first judge).")
    task: str = Field("Persona Consistency", description="Which rubric (an evaluation task name) scores the answer.")
    max_attempts: int = Field(1, ge=1, description="Tries per answer when the verdict does not parse.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=128))


def judge_reward(settings: dict[str, Any], context: RewardContext) -> RewardFunc:
    """A rubric score (1–5, mapped to 0–1) per answer, all answers of a step batched through one Engine
    (cache, concurrency, retries). A call that fails — the judge down, a verdict that never parses —
    gives no score (None) and is counted; the step goes on with the other rewards."""
    config: JudgeSettings = _settings(JudgeSettings, settings, "judge")
    from opencharacter.eval.tasks import TASK_BY_NAME

    if config.task not in TASK_BY_NAME:
        raise ConfigError(
            f"grpo reward 'judge': unknown task {config.task!r} (choose one of {', '.join(TASK_BY_NAME)})"
        )
    backend_config = config.judge or context.default_judge
    if backend_config is None:
        raise ConfigError("grpo reward 'judge' needs a judge: give `judge: {backend: ..., model: ...}`")
    state: dict[str, Any] = {}

    def engine() -> Any:
        if "engine" not in state:
            from opencharacter.backends import build_backend
            from opencharacter.engine.engine import Engine
            from opencharacter.store import RunStore

            cache = context.cache_dir or Path(".")
            state["loop"] = (
                asyncio.new_event_loop()
            )  # one loop for the trainer's life: the engine's semaphore binds to it
            state["engine"] = Engine(
                build_backend(backend_config),
                RunStore(cache),
                concurrency=backend_config.concurrency,
                max_retries=backend_config.max_retries,
            )
        return state["engine"]

    async def one(engine: Any, character: str, persona: str, asked: str, answer: str) -> float | None:
        from opencharacter.eval import stages
        from opencharacter.eval.records import Answer, EvalPersona

        who = EvalPersona(persona_id=character, persona=persona, character=context.profiles[character])
        item = Answer(
            question_id=content_hash("grpo-question", character, asked),
            persona_id=character,
            task=config.task,
            question=asked,
            answer=answer,
            model="grpo-policy",
            system_prompt="",
        )
        try:
            verdict = await stages.judge(engine, who, item, [], config.sampling, config.max_attempts)
        except BackendError as exc:
            print(f"judge reward: call failed ({exc}); no judge score for this answer", file=sys.stderr)
            return None
        return None if verdict.score is None else (verdict.score - 1) / 4

    def judge(
        completions: list[Any],
        character_id: list[str],
        persona: list[str],
        question: list[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        running = engine()

        async def all_answers() -> list[float | None]:
            rows = zip(character_id, persona, question, completions, strict=True)
            return await asyncio.gather(*(one(running, c, p, q, answer_text(a)) for c, p, q, a in rows))

        loop = state["loop"]
        scores = loop.run_until_complete(all_answers())
        # The store commits on a timer task: end it now (its `finally` commits), so every verdict is
        # on disk before the trainer moves on, and no task is left pending when the process ends.
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:  # (gather() of nothing would make its future on another loop)
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        failed = sum(score is None for score in scores)
        context.failures["judge"] = context.failures.get("judge", 0) + failed
        if log_metric is not None:
            log_metric("judge/failed", float(failed))
        return scores

    return judge


def build_rewards(specs: list[Any], context: RewardContext) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions (named as their labels, for TRL's per-reward logs) and their weights."""
    from opencharacter.registry import REWARDS

    labels = [spec.shown for spec in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"grpo rewards: {', '.join(repeated)} appear more than once; give each a distinct `label`")
    funcs = [_timed(REWARDS.load(spec.name)(spec.settings(), context), spec.shown) for spec in specs]
    return funcs, [spec.weight for spec in specs]
