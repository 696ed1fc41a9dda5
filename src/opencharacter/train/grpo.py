"""`opencharacter train --method grpo`: reinforcement learning with TRL's GRPOTrainer and a LoRA adapter.

Each step samples `num_generations` answers to a few prompts — (the system prompt with the
character, a user turn), from a run's dialogues or an instruction file asked of every character —
scores every answer with the weighted rewards of `train.grpo.rewards` (`train/rewards.py`), and
moves the policy towards the answers that beat their group's mean. It starts from a base model (a
fresh adapter) or continues an SFT adapter (`init_adapter`). With `beta: 0` (TRL's default) no
reference model is held.

Cost: every step generates prompts_per_step × num_generations answers and calls each reward on all
of them — with the `judge` reward, that many judge calls per step (cached by the engine).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError
from opencharacter.hashing import content_hash
from opencharacter.records import Character
from opencharacter.train.common import (
    TrainResult,
    base_model_name,
    check_out,
    finish,
    import_trl,
    last_checkpoint,
    load_base,
    lora_config,
    result_meta,
    trainer_arguments,
    write_reports,
)
from opencharacter.train.config import TrainConfig
from opencharacter.train.data import dump_split
from opencharacter.train.distributed import check_launch, is_main_process, rank, world_size
from opencharacter.train.memory import memory_plan
from opencharacter.train.rewards import RewardContext, build_rewards


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    """The system prompt with the character, then the user turn the policy answers."""
    character: str
    persona: str
    profile: str
    question: str

    def as_row(self) -> dict[str, Any]:
        return {
            "prompt": self.messages,
            "character_id": self.character,
            "persona": self.persona,
            "profile": self.profile,
            "question": self.question,
        }


@dataclass
class Prompts:
    prompts: list[Prompt]
    profiles: dict[str, str]
    system_prompt_version: str | None


def _characters(run: Path) -> dict[str, Character]:
    path = run / "characters.jsonl"
    if not path.is_file():
        raise ConfigError(f"{run}: no characters.jsonl (GRPO's rewards need every character's profile)")
    lines = path.read_text(encoding="utf-8").splitlines()
    return {c.character_id: c for c in (Character.model_validate_json(line) for line in lines if line.strip())}


def load_prompts(run: str | Path, strategies: list[str] | None, instructions: str | None) -> Prompts:
    """Prompts from the run's dialogues (each distinct character × question once), or the first user
    turn of every instruction in `instructions` asked of every character, with the run's system prompt."""
    from opencharacter.prompts.system_prompt import render_system_prompt
    from opencharacter.train.data import load_training_data

    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run}: GRPO trains from a run directory (its characters and dialogues)")
    characters = _characters(run)
    profiles = {cid: c.character for cid, c in characters.items()}
    prompts: dict[tuple[str, str], Prompt] = {}
    version = None
    if instructions is not None:
        from opencharacter.sources.files import InstructionFile

        for instruction in InstructionFile(instructions, fmt=None, skip_invalid=False, limit=None):
            user = next((t.content for t in instruction.turns if t.role == "user"), None)
            for cid, character in sorted(characters.items()):
                system = render_system_prompt(character.persona, character.character)
                messages = [{"role": "system", "content": system}, {"role": "user", "content": user or ""}]
                prompts[(cid, user or "")] = Prompt(messages, cid, character.persona, character.character, user or "")
    else:
        data = load_training_data(run, strategies)
        version = data.system_prompt_version
        for example in data.examples:
            if example.character not in characters:
                continue
            first = next(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
            head = [m for m in example.messages[:first] if m["role"] in ("system", "user")]
            question = next((m["content"] for m in reversed(head) if m["role"] == "user"), "")
            character = characters[example.character]
            prompts.setdefault(
                (example.character, question),
                Prompt(head, example.character, character.persona, character.character, question),
            )
    if not prompts:
        raise ConfigError(f"{run}: no prompts for GRPO (no dialogues of its characters)")
    if len(profiles) < 2:
        raise ConfigError(f"{run}: GRPO's fidelity needs at least two characters, found {len(profiles)}")
    return Prompts(list(prompts.values()), profiles, version)


def _sample(prompts: list[Prompt], limit: int | None, seed: int) -> list[Prompt]:
    if limit is None or len(prompts) <= limit:
        return prompts
    ordered = sorted(prompts, key=lambda p: content_hash("grpo-prompts", seed, p.character, p.question))
    return ordered[:limit]


def _reward_line_callback(labels: list[str]) -> Any:
    from transformers import TrainerCallback

    from opencharacter.train.progress import StepClock

    class RewardLine(TrainerCallback):
        """One line per logged step: the summed reward and each component's mean."""

        clock: StepClock | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.clock = StepClock(state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            if not logs or "reward" not in logs or not state.is_world_process_zero:  # one line per step
                return
            parts = [f"step {state.global_step}/{state.max_steps}", f"reward {float(logs['reward']):.3f}"]
            if "kl" in logs and args.beta:
                parts.append(f"KL {float(logs['kl']):.4f}")
            # A reward with no score this step (every judge call failed) is logged as None: shown as n/a.
            parts += [f"{label} {_shown(logs[key])}" for label in labels if (key := f"rewards/{label}/mean") in logs]
            if logs.get("judge/failed"):
                parts.append(f"judge failures {float(logs['judge/failed']):.0f}")
            rate = self.clock.rate_and_eta(state.global_step) if self.clock is not None else ""
            print("  " + " · ".join(parts) + (f" · {rate}" if rate else ""), file=sys.stderr, flush=True)

    return RewardLine()


def _scored(value: Any) -> bool:
    return value is not None and not math.isnan(float(value))


def _shown(value: Any) -> str:
    return f"{float(value):.3f}" if _scored(value) else "n/a"


def reward_summary(history: list[dict[str, Any]], labels: list[str], failures: dict[str, int]) -> dict[str, Any]:
    """Per component: the first and last logged mean and the mean over training; judge failures counted."""
    summary: dict[str, Any] = {}
    for label in ["reward", *(f"rewards/{label}/mean" for label in labels)]:
        values = [float(e[label]) for e in history if _scored(e.get(label))]
        name = label.removeprefix("rewards/").removesuffix("/mean")
        if values:
            summary[name] = {"first": values[0], "last": values[-1], "mean": sum(values) / len(values)}
    summary["failed_calls"] = dict(failures)
    return summary


def grpo_arguments(config: TrainConfig, plan: Any, checkpoints: Path, loaded: Any, weights: list[float]) -> Any:
    """GRPOConfig from our TrainingArguments (those GRPOConfig has) plus the GRPO settings."""
    from trl import GRPOConfig

    settings = config.grpo
    accepted = {f.name for f in dataclasses.fields(GRPOConfig)}
    shared = {k: v for k, v in trainer_arguments(config, plan, checkpoints, loaded, False).items() if k in accepted}
    completions = settings.prompts_per_step * settings.num_generations
    shared.update(per_device_train_batch_size=completions, per_device_eval_batch_size=completions)
    shared["gradient_accumulation_steps"] = 1
    return GRPOConfig(
        **shared,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        reward_weights=weights,
        log_completions=False,
    )


def train_grpo(
    config: TrainConfig,
    data_source: str | Path,
    out: str | Path,
    resume: bool = False,
    default_judge: Any = None,
) -> TrainResult:
    settings = config.grpo
    base_model_name(config)  # a wrong init_adapter fails before torch loads
    check_launch()
    out = Path(out)
    checkpoints = out / "checkpoints"
    if is_main_process():  # under a launcher rank 0 decides: another rank may look after rank 0 wrote
        check_out(out, resume)
    data = load_prompts(data_source, config.strategies, settings.instructions)
    prompts = _sample(data.prompts, settings.max_prompts, config.seed)
    random.Random(content_hash("grpo-order", config.seed)).shuffle(prompts)
    out.mkdir(parents=True, exist_ok=True)
    # Each rank judges its own answers: one cache per rank (two ranks creating one store raced).
    calls = out / "judge-calls" if world_size() == 1 else out / "judge-calls" / f"rank-{rank()}"
    context = RewardContext(data.profiles, config.seed, calls, default_judge)
    rewards, weights = build_rewards(settings.rewards, context)  # a bad reward setting fails before torch loads
    labels = [spec.shown for spec in settings.rewards]
    import_trl()
    import datasets
    from trl import GRPOTrainer

    loaded = load_base(config)
    plan = memory_plan(config, loaded.cuda, world_size=world_size())
    plan = dataclasses.replace(plan, micro_batch=settings.prompts_per_step * settings.num_generations, accumulation=1)
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=rewards,
        args=grpo_arguments(config, plan, checkpoints, loaded, weights),
        train_dataset=datasets.Dataset.from_list([p.as_row() for p in prompts]),
        processing_class=loaded.tokenizer,
        peft_config=lora_config(config),
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_reward_line_callback(labels))  # the loss line of SFT/DPO says little here: rewards do
    trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints) if resume else None)
    result = finish(trainer, config, out, loaded, plan, (len(prompts), 0, 0))
    result.rewards = reward_summary(result.losses, labels, context.failures)
    if not result.main_process:  # rank 0 writes the reports (its judge failures: those it saw)
        return result
    version = data.system_prompt_version or _init_prompt_version(config.init_adapter)
    meta = result_meta(config, result, loaded.base_model, str(data_source), version)
    meta["grpo"] = {
        "prompts": len(prompts),
        "answers_per_step": settings.prompts_per_step * settings.num_generations * world_size(),
        "rewards": [{"label": s.shown, "weight": s.weight, **s.settings()} for s in settings.rewards],
    }
    write_reports(out, meta, result.losses)
    dump_split(out / "split.json", prompts, [])
    return result


def _init_prompt_version(init_adapter: str | None) -> str | None:
    from opencharacter.models.loading import model_meta

    return model_meta(init_adapter).get("system_prompt_version") if init_adapter else None
