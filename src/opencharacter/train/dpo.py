"""`opencharacter train --method dpo`: preference training with TRL's DPOTrainer and a LoRA adapter.

The reference model is where the policy starts: the base model (a fresh adapter, disabled), or with
`init_adapter` the SFT model it continues. For the latter TRL keeps a frozen copy of the loaded
adapter beside the trained one (adapter "ref" on the same base weights), so the reference costs one
more LoRA adapter in memory, not a second model. Log-probabilities come from TRL's fused LM head,
which never materialises full-vocabulary logits (the job train/loss.py does for SFT).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError
from opencharacter.models.loading import model_meta
from opencharacter.train.common import (
    TrainResult,
    base_model_name,
    check_out,
    devices,
    finish,
    fit,
    import_trl,
    load_base,
    lora_config,
    result_meta,
    trainer_arguments,
    with_extra,
    write_reports,
)
from opencharacter.train.config import TrainConfig
from opencharacter.train.data import dump_split, split_by_character
from opencharacter.train.distributed import barrier, check_launch, world_size
from opencharacter.train.memory import memory_plan
from opencharacter.train.preferences import PairExample, load_preferences


def _table(examples: list[PairExample]) -> Any:
    import datasets

    rows = [e.as_trl_row() for e in examples]
    return datasets.Dataset.from_list(rows)


def _truncated(prepared: Any, given: int, max_length: int) -> int:
    """Pairs cut at max_length (TRL keeps their start) plus pairs TRL dropped (the prompt alone fills it)."""
    if prepared is None:
        return 0
    cut = sum(
        len(p) + max(len(c), len(r)) > max_length
        for p, c, r in zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"], strict=True)
    )
    return cut + given - len(prepared)


def _rewards(history: list[dict[str, Any]], final: dict[str, float]) -> dict[str, float | None]:
    """Reward accuracy (share of pairs where the policy, relative to the reference, prefers the chosen
    answer) and margin (beta × the log-ratio difference), last logged in training and on held-out pairs."""
    logged = [e for e in history if "rewards/accuracies" in e]
    last = logged[-1] if logged else {}
    return {
        "train_accuracy": last.get("rewards/accuracies"),
        "train_margin": last.get("rewards/margins"),
        "validation_accuracy": final.get("eval_rewards/accuracies"),
        "validation_margin": final.get("eval_rewards/margins"),
    }


def _init_prompt_version(init_adapter: str | None) -> str | None:
    """Pairs from a file (not a run) name no system-prompt template: inherit the SFT model's."""
    return model_meta(init_adapter).get("system_prompt_version") if init_adapter else None


def train_dpo(config: TrainConfig, data_source: str | Path, out: str | Path, resume: bool = False) -> TrainResult:
    base_model_name(config)  # a wrong init_adapter fails before torch loads
    import_trl()
    import torch
    from trl import DPOConfig, DPOTrainer

    check_launch()
    out = Path(out)
    checkpoints = out / "checkpoints"
    check_out(out, resume)
    data = load_preferences(data_source, config.strategies)
    train_pairs, validation_pairs = split_by_character(data.examples, config.validation_characters, config.seed)
    if not train_pairs:
        raise ConfigError(f"{data.source}: every pair is from a held-out character; lower validation_characters")
    cuda = torch.cuda.is_available()
    plan = memory_plan(config, cuda, sequences_per_example=2, world_size=world_size())
    # TRL's fused LM head (always on for DPO) scores tokens without full-vocabulary logits.
    plan = dataclasses.replace(plan, chunked_loss=True)
    has_validation = bool(validation_pairs)
    ours = {
        **trainer_arguments(config, plan, checkpoints, None, has_validation),
        **devices(cuda, False),
        "beta": config.dpo_beta,
        "loss_type": ["sigmoid"],
    }
    arguments = with_extra(ours, config.trainer_extra, DPOConfig)  # before the model loads
    loaded = load_base(config)
    args = DPOConfig(**{**arguments, **devices(loaded.cuda, loaded.bf16)})
    barrier(args)  # every rank has checked `out` before rank 0 writes into it
    trainer = DPOTrainer(
        model=loaded.model,
        args=args,
        train_dataset=_table(train_pairs),
        eval_dataset=_table(validation_pairs) if has_validation else None,
        processing_class=loaded.tokenizer,
        peft_config=lora_config(config),
    )
    if len(trainer.train_dataset) == 0:
        raise ConfigError(f"every training pair's prompt fills max_length={config.max_length}; raise it")
    truncated = _truncated(trainer.train_dataset, len(train_pairs), config.max_length) + _truncated(
        trainer.eval_dataset, len(validation_pairs), config.max_length
    )
    final = fit(trainer, checkpoints, resume, has_validation)
    result = finish(trainer, config, out, loaded, plan, (len(train_pairs), len(validation_pairs), truncated))
    result.final_validation_loss = final.get("eval_loss")
    result.rewards = _rewards(result.losses, final)
    if result.main_process:
        version = data.system_prompt_version or _init_prompt_version(config.init_adapter)
        meta = result_meta(config, result, loaded.base_model, str(data.source), version)
        meta["reference_model"] = f"SFT adapter {config.init_adapter}" if config.init_adapter else "the base model"
        write_reports(out, meta, result.losses)
        dump_split(out / "split.json", train_pairs, validation_pairs)
    return result
