"""`opencharacter train`: SFT with TRL's SFTTrainer on pre-tokenised, assistant-masked dialogues,
or (`method: dpo`) preference training with TRL's DPOTrainer (train/dpo.py).

We tokenise and mask ourselves (train/masking.py) and hand TRL `input_ids` + `labels`, so the
loss mask is the one our tests check, for any prefix-preserving chat template.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError
from opencharacter.hashing import content_hash
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
    record_adapter_base,
    result_meta,
    shareable_base_id,
    trainer_arguments,
    with_extra,
    write_reports,
)
from opencharacter.train.config import TrainConfig
from opencharacter.train.data import Example, dump_split, load_training_data, split_by_character
from opencharacter.train.distributed import barrier, check_launch, main_process_first, world_size
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


def _tokenize_once(
    args: Any, out: Path, tokenizer: Any, splits: tuple[list[Example], list[Example]], max_length: int
) -> tuple[Any, Any, int]:
    """(training set, validation set, truncated dialogues), tokenised by rank 0 into `out/tokenized/<key>`
    and read from there by the other ranks (and by a resumed run)."""
    import datasets

    key = content_hash(
        "tokenized", tokenizer.name_or_path, tokenizer.chat_template, max_length,
        [[e.messages for e in split] for split in splits],
    )  # fmt: skip
    cache = out / "tokenized" / key
    with main_process_first(args, "tokenising"):
        if not (cache / "done.json").is_file():
            train_set, cut = _tokenize(tokenizer, splits[0], max_length)
            validation_set, cut_val = _tokenize(tokenizer, splits[1], max_length)
            train_set.save_to_disk(str(cache / "train"))
            validation_set.save_to_disk(str(cache / "validation"))
            (cache / "done.json").write_text(json.dumps({"truncated": cut + cut_val}), encoding="utf-8")
        truncated = json.loads((cache / "done.json").read_text(encoding="utf-8"))["truncated"]
        return (
            datasets.load_from_disk(str(cache / "train")),
            datasets.load_from_disk(str(cache / "validation")),
            truncated,
        )


def train(config: TrainConfig, data_source: str | Path, out: str | Path, resume: bool = False) -> TrainResult:
    """Train as `config.method` says: SFT with LoRA or full weights on dialogues, or DPO on preference
    pairs (a run directory's preferences.jsonl). Under torchrun / accelerate launch every rank calls
    this; rank 0 writes the result (`TrainResult.main_process`)."""
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
    import torch
    from trl import SFTConfig

    check_launch()
    out = Path(out)
    checkpoints = out / "checkpoints"
    check_out(out, resume)
    data = load_training_data(data_source, config.strategies, config.sources)
    train_examples, validation_examples = split_by_character(data.examples, config.validation_characters, config.seed)
    cuda = torch.cuda.is_available()
    plan = memory_plan(config, cuda, world_size=world_size())
    has_validation = bool(validation_examples)
    ours = {**trainer_arguments(config, plan, checkpoints, None, has_validation), **devices(cuda, False)}
    arguments = with_extra({**ours, "packing": config.packing}, config.trainer_extra, SFTConfig)  # before loading
    loaded = load_base(config)
    args = SFTConfig(**{**arguments, **devices(loaded.cuda, loaded.bf16)})
    barrier(args)  # every rank has checked `out` before rank 0 writes into it
    train_set, validation_set, truncated = _tokenize_once(
        args, out, loaded.tokenizer, (train_examples, validation_examples), config.max_length
    )
    if len(train_set) == 0:
        raise ConfigError(f"no training dialogue keeps an answer within max_length={config.max_length}; raise it")
    has_validation = len(validation_set) > 0
    if not has_validation:  # every held-out dialogue was cut before its first answer
        from transformers.trainer_utils import IntervalStrategy

        args.eval_strategy = IntervalStrategy.NO
    trainer = sft_trainer_class(plan.chunked_loss)(
        model=loaded.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set if has_validation else None,
        processing_class=loaded.tokenizer,
        peft_config=lora_config(config),
    )
    final = fit(trainer, checkpoints, resume, has_validation)
    counts = (len(train_examples), len(validation_examples), truncated)
    result = finish(trainer, config, out, loaded, plan, counts)
    result.final_validation_loss = final.get("eval_loss")
    if result.main_process:
        meta = result_meta(config, result, loaded.base_model, str(data_source), data.system_prompt_version)
        write_reports(out, meta, result.losses)
        dump_split(out / "split.json", train_examples, validation_examples)
        shutil.rmtree(out / "tokenized", ignore_errors=True)  # a finished model needs no cache
    return result
