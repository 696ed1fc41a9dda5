"""`opencharacter train`: SFT with TRL's SFTTrainer on pre-tokenised, assistant-masked dialogues,
or (`method: dpo`) preference training with TRL's DPOTrainer (train/dpo.py).

We tokenise and mask ourselves (train/masking.py) and hand TRL `input_ids` + `labels`, so the
loss mask is the one our tests check, for any prefix-preserving chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError
from opencharacter.train.common import (
    TrainResult,
    base_model_name,
    check_out,
    finish,
    fit,
    import_trl,
    load_base,
    lora_config,
    record_adapter_base,
    result_meta,
    shareable_base_id,
    trainer_arguments,
    write_reports,
)
from opencharacter.train.config import TrainConfig
from opencharacter.train.data import Example, dump_split, load_training_data, split_by_character
from opencharacter.train.masking import IGNORE, tokenize_conversation
from opencharacter.train.memory import memory_plan, sft_trainer_class

__all__ = ["TrainResult", "record_adapter_base", "shareable_base_id", "train"]


def _tokenize(tokenizer: Any, examples: list[Example], max_length: int) -> tuple[Any, int]:
    import datasets

    rows = [tokenize_conversation(tokenizer, e.messages, max_length) for e in examples]
    # A dialogue truncated before its first answer has nothing to learn from: drop it (still counted).
    kept = [r for r in rows if any(label != IGNORE for label in r.labels)]
    table = datasets.Dataset.from_dict({"input_ids": [r.input_ids for r in kept], "labels": [r.labels for r in kept]})
    return table, sum(r.truncated for r in rows)


def train(config: TrainConfig, data_source: str | Path, out: str | Path, resume: bool = False) -> TrainResult:
    """Train as `config.method` says: SFT with LoRA or full weights on dialogues, or DPO on preference
    pairs (a run directory's preferences.jsonl)."""
    if config.method == "dpo":
        from opencharacter.train.dpo import train_dpo

        return train_dpo(config, data_source, out, resume)
    if config.method == "grpo":
        from opencharacter.train.grpo import train_grpo

        return train_grpo(config, data_source, out, resume)
    if config.init_adapter and config.method == "full":
        raise ConfigError("init_adapter continues a LoRA adapter: use method lora or dpo, not full")
    base_model_name(config)  # a wrong init_adapter fails before torch loads
    import_trl()
    from trl import SFTConfig

    out = Path(out)
    checkpoints = out / "checkpoints"
    check_out(out, resume)
    data = load_training_data(data_source, config.strategies)
    train_examples, validation_examples = split_by_character(data.examples, config.validation_characters, config.seed)
    loaded = load_base(config)
    train_set, truncated = _tokenize(loaded.tokenizer, train_examples, config.max_length)
    validation_set, truncated_val = _tokenize(loaded.tokenizer, validation_examples, config.max_length)
    if len(train_set) == 0:
        raise ConfigError(f"no training dialogue keeps an answer within max_length={config.max_length}; raise it")
    has_validation = len(validation_set) > 0
    plan = memory_plan(config, loaded.cuda)
    args = SFTConfig(
        **trainer_arguments(config, plan, checkpoints, loaded, has_validation),
        packing=config.packing,
    )
    trainer = sft_trainer_class(plan.chunked_loss)(
        model=loaded.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set if has_validation else None,
        processing_class=loaded.tokenizer,
        peft_config=lora_config(config),
    )
    final = fit(trainer, checkpoints, resume, has_validation)
    counts = (len(train_examples), len(validation_examples), truncated + truncated_val)
    result = finish(trainer, config, out, loaded, plan, counts)
    result.final_validation_loss = final.get("eval_loss")
    meta = result_meta(config, result, loaded.base_model, str(data_source), data.system_prompt_version)
    write_reports(out, meta, result.losses)
    dump_split(out / "split.json", train_examples, validation_examples)
    return result
