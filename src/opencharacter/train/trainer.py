"""`opencharacter train`: SFT with TRL's SFTTrainer on pre-tokenised, assistant-masked dialogues.

We tokenise and mask ourselves (train/masking.py) and hand TRL `input_ids` + `labels`, so the
loss mask is the one our tests check, for any prefix-preserving chat template.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.backends.model_loading import MODEL_META, resolve_model_path
from opencharacter.errors import ConfigError, MissingDependencyError
from opencharacter.train.config import TrainConfig
from opencharacter.train.data import Example, dump_split, load_training_data, split_by_character
from opencharacter.train.masking import IGNORE, tokenize_conversation
from opencharacter.train.memory import memory_plan, peak_rss_bytes, sft_trainer_class
from opencharacter.train.report import plot_losses, write_model_card


@dataclass
class TrainResult:
    out: Path
    train_examples: int
    validation_examples: int
    truncated: int
    steps: int
    losses: list[dict[str, float]] = field(default_factory=list)
    final_train_loss: float | None = None
    final_validation_loss: float | None = None
    peak_rss: int = 0
    """Peak resident memory of this process, bytes (includes loading data and the model)."""
    plan: dict[str, Any] = field(default_factory=dict)
    base_model_id: str = ""


def _tokenize(tokenizer: Any, examples: list[Example], max_length: int) -> tuple[Any, int]:
    import datasets

    rows = [tokenize_conversation(tokenizer, e.messages, max_length) for e in examples]
    # A dialogue truncated before its first answer has nothing to learn from: drop it (still counted).
    kept = [r for r in rows if any(label != IGNORE for label in r.labels)]
    table = datasets.Dataset.from_dict({"input_ids": [r.input_ids for r in kept], "labels": [r.labels for r in kept]})
    return table, sum(r.truncated for r in rows)


def _loss_line_callback() -> Any:
    from transformers import TrainerCallback

    from opencharacter.train.progress import StepClock

    class LossLine(TrainerCallback):
        """One short line per log: step/total, loss, validation loss, rate and ETA — not raw dicts."""

        last = ""
        clock: StepClock | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.clock = StepClock(state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            if not logs:
                return
            parts = [f"step {state.global_step}/{state.max_steps}"]
            if "loss" in logs:
                parts.append(f"loss {float(logs['loss']):.4f}")
            if "eval_loss" in logs:
                parts.append(f"validation loss {float(logs['eval_loss']):.4f}")
            if self.clock is not None and len(parts) > 1:
                parts.append(self.clock.rate_and_eta(state.global_step))
            line = "  " + " · ".join(p for p in parts if p)
            if len(parts) > 1 and line != self.last:  # the final evaluate() repeats the last validation line
                self.last = line
                print(line, file=sys.stderr, flush=True)

    return LossLine()


def _last_checkpoint(directory: Path) -> str | None:
    checkpoints = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def train(config: TrainConfig, data_source: str | Path, out: str | Path, resume: bool = False) -> TrainResult:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "trl", "train") from None
    from opencharacter.backends.embedded import quiet_transformers

    quiet_transformers()
    import datasets

    datasets.disable_progress_bars()
    out = Path(out)
    checkpoints = out / "checkpoints"
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"{out} exists and is not empty; choose a new --out or pass --resume")
    data = load_training_data(data_source, config.strategies)
    train_examples, validation_examples = split_by_character(data.examples, config.validation_characters, config.seed)
    weights = resolve_model_path(config.model)
    tokenizer = AutoTokenizer.from_pretrained(weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set, truncated = _tokenize(tokenizer, train_examples, config.max_length)
    validation_set, truncated_val = _tokenize(tokenizer, validation_examples, config.max_length)

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.bfloat16 if bf16 else torch.float32)
    peft_config = None
    if config.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.target_modules,
            task_type="CAUSAL_LM",
        )
    if len(train_set) == 0:
        raise ConfigError(f"no training dialogue keeps an answer within max_length={config.max_length}; raise it")
    has_validation = len(validation_set) > 0
    plan = memory_plan(config, cuda)
    args = SFTConfig(
        output_dir=str(checkpoints),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=plan.micro_batch,
        per_device_eval_batch_size=plan.micro_batch,
        gradient_accumulation_steps=plan.accumulation,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.scheduler,
        max_length=config.max_length,
        packing=config.packing,
        seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        bf16=bf16,
        use_cpu=not cuda,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        gradient_checkpointing=plan.gradient_checkpointing,
    )
    trainer = sft_trainer_class(plan.chunked_loss)(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set if has_validation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_loss_line_callback())
    checkpoint = _last_checkpoint(checkpoints) if resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    final_validation = trainer.evaluate().get("eval_loss") if has_validation else None

    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    base_id = shareable_base_id(config.model)
    if config.method == "lora":
        record_adapter_base(out, base_id)
    if config.merge and config.method == "lora":
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(out / "merged")
        tokenizer.save_pretrained(out / "merged")
    history = [dict(entry) for entry in trainer.state.log_history]
    train_losses = [e["loss"] for e in history if "loss" in e]
    result = TrainResult(
        out=out,
        train_examples=len(train_examples),
        validation_examples=len(validation_examples),
        truncated=truncated + truncated_val,
        steps=trainer.state.global_step,
        losses=history,
        final_train_loss=train_losses[-1] if train_losses else None,
        final_validation_loss=final_validation,
        peak_rss=peak_rss_bytes(),
        plan=plan.as_dict(),
        base_model_id=base_id,
    )
    meta = {
        # What this machine resolves (e.g. 'embedded' → its converted files) and what others load.
        "base_model": config.model,
        "base_model_id": base_id,
        "memory_plan": result.plan,
        "peak_rss_bytes": result.peak_rss,
        "method": config.method,
        "system_prompt_version": data.system_prompt_version,
        "data": str(data_source),
        "config": config.model_dump(mode="json"),
        "train_examples": result.train_examples,
        "validation_examples": result.validation_examples,
        "truncated": result.truncated,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_validation_loss": result.final_validation_loss,
    }
    (out / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "loss_history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    dump_split(out / "split.json", train_examples, validation_examples)
    plot_losses(history, out / "loss.png")
    write_model_card(out, meta)
    return result


def shareable_base_id(model: str) -> str:
    """The base model as anyone can load it: the hub id of the embedded model, else what was given."""
    from opencharacter.backends.embedded import EMBEDDED_HUB_ID, EMBEDDED_NAME

    return EMBEDDED_HUB_ID if model == EMBEDDED_NAME else model


def record_adapter_base(out: Path, base_id: str) -> None:
    """peft writes the path the base was loaded from (here, this machine's cache): name the hub id,
    so plain peft / transformers / vLLM load the adapter anywhere. Our own loader still resolves
    the local files through `opencharacter.json`."""
    path = out / "adapter_config.json"
    adapter = json.loads(path.read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
