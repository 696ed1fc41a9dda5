"""What SFT and DPO share: the output directory, the base model and tokenizer, TRL's arguments, the
progress line, checkpoints and resume, and everything written beside the weights.

Both trainers are thin wrappers over TRL; only the data and the TRL trainer class differ, so one
`opencharacter.json`, one model card and one loader (`models/loading.py`) serve both.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError, MissingDependencyError
from opencharacter.executors.processes import peak_rss_bytes
from opencharacter.models.loading import MODEL_META, adapter_base, resolve_model_path
from opencharacter.train.config import TrainConfig
from opencharacter.train.memory import MemoryPlan
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
    method: str = "lora"
    rewards: dict[str, float | None] = field(default_factory=dict)
    """DPO only: reward accuracy and margin, last logged in training and on held-out characters."""
    main_process: bool = True
    """Rank 0 (or the only process): the one that wrote the files and reports to the user."""


@dataclass
class LoadedBase:
    model: Any
    tokenizer: Any
    base_model: str
    """The base as this machine names it ('embedded', a hub id, a directory): what our loader resolves."""
    cuda: bool
    bf16: bool
    """bf16 autocast (TrainingArguments `bf16`): over float32 weights for full fine-tuning."""


def import_trl() -> None:
    """Fail with the pip command, not a traceback, when the `train` extra is missing."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "trl", "train") from None
    from opencharacter.models.embedded import quiet_transformers

    quiet_transformers()
    import datasets

    datasets.disable_progress_bars()


def check_out(out: Path, resume: bool) -> None:
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"{out} exists and is not empty; choose a new --out or pass --resume")


def base_model_name(config: TrainConfig) -> str:
    """The base model: `config.model`, or the one `init_adapter` was trained on (a LoRA adapter only
    makes sense on its own base, so naming another one explicitly is an error)."""
    if not config.init_adapter:
        return config.model
    directory = Path(config.init_adapter)
    if not (directory / "adapter_config.json").is_file():
        raise ConfigError(
            f"init_adapter {directory}: not a LoRA adapter directory (no adapter_config.json); "
            "a fully fine-tuned model is a base model: pass it as --model"
        )
    base = adapter_base(str(directory)) or config.model  # with adapter_config.json, it names a base or raises
    if "model" in config.model_fields_set and config.model != base:
        raise ConfigError(f"init_adapter {directory} was trained on {base}, not on --model {config.model}")
    return base


def precision(config: TrainConfig, cuda: bool, bf16_supported: bool) -> tuple[Any, bool]:
    """(dtype the weights are loaded in, bf16 autocast on?).

    Full fine-tuning keeps float32 master weights under bf16 autocast: in pure bf16 (8 bits of
    mantissa) a 1e-5 Adam step on a weight of 0.02 is below half a unit in the last place, so most
    updates at the paper's learning rate would round away. LoRA and DPO train float32 adapters
    (peft keeps them so) over a frozen base, which can stay in bf16 and halve its memory.
    """
    import torch

    autocast = (cuda and bf16_supported) if config.bf16 is None else config.bf16
    frozen_base = config.method in ("lora", "dpo")
    return (torch.bfloat16 if autocast and frozen_base else torch.float32), autocast


def read_chat_template(value: str) -> str:
    """`chat_template` is a Jinja string or a path to one."""
    path = Path(value)
    if "{" not in value and path.suffix in (".jinja", ".j2", ".txt"):
        if not path.is_file():
            raise ConfigError(f"chat_template: {value} not found")
        return path.read_text(encoding="utf-8")
    return value


def load_base(config: TrainConfig) -> LoadedBase:
    """Tokenizer and model as SFT and DPO both train them; with `init_adapter`, the adapter is
    loaded on top, trainable, so training continues from it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base_model_name(config)
    weights = resolve_model_path(base)
    tokenizer = AutoTokenizer.from_pretrained(config.init_adapter or weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.chat_template:
        tokenizer.chat_template = read_chat_template(config.chat_template)
    if not tokenizer.chat_template:
        raise ConfigError(
            f"{base} has no chat template (a base, not an instruct, model?): set train.chat_template to a "
            "Jinja template or a .jinja file"
        )
    cuda = torch.cuda.is_available()
    dtype, autocast = precision(config, cuda, cuda and torch.cuda.is_bf16_supported())
    extra = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, **extra)
    if config.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
        # Its config names the hub id (record_adapter_base); peft would look it up online when saving.
        # Point it at the local weights as a fresh adapter does; the output names the hub id again.
        model.peft_config["default"].base_model_name_or_path = weights
    return LoadedBase(model, tokenizer, base, cuda, autocast)


def lora_config(config: TrainConfig) -> Any:
    """A fresh adapter from the settings; None when training continues from `init_adapter` (its own
    rank and targets) or fine-tunes every weight."""
    if config.init_adapter or config.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


def trainer_arguments(
    config: TrainConfig, plan: MemoryPlan, checkpoints: Path, loaded: LoadedBase | None, has_validation: bool
) -> dict[str, Any]:
    """The TrainingArguments both SFTConfig and DPOConfig take, from one TrainConfig (`loaded` None:
    the devices are not known yet, see `devices`)."""
    arguments = {
        "output_dir": str(checkpoints),
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": plan.micro_batch,
        "per_device_eval_batch_size": plan.micro_batch,
        "gradient_accumulation_steps": plan.accumulation,
        "warmup_steps": config.warmup_ratio,
        "lr_scheduler_type": config.scheduler,
        "lr_scheduler_kwargs": dict(config.lr_scheduler_kwargs),
        "optim": config.optim,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "weight_decay": config.weight_decay,
        "max_length": config.max_length,
        "seed": config.seed,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if has_validation else "no",
        "eval_steps": config.eval_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "report_to": list(config.report_to) or "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "gradient_checkpointing": plan.gradient_checkpointing,
        **({"fsdp": config.fsdp} if config.fsdp else {}),
        **({"fsdp_config": config.fsdp_config} if config.fsdp_config is not None else {}),
        **({"deepspeed": config.deepspeed} if config.deepspeed else {}),
    }
    if loaded is not None:
        arguments.update(devices(loaded.cuda, loaded.bf16))
    return arguments


def devices(cuda: bool, bf16: bool) -> dict[str, Any]:
    return {"bf16": bf16, "use_cpu": not cuda}  # DPOConfig defaults bf16 to True; CPUs train in float32


OVERRIDABLE = {"save_total_limit", "dataloader_num_workers", "logging_first_step", "disable_tqdm", "save_strategy"}
"""What trainer_arguments sets but `trainer_extra` may still change (no TrainConfig field says it)."""


def with_extra(arguments: dict[str, Any], extra: dict[str, Any], config_class: Any) -> dict[str, Any]:
    """`trainer_extra` on top of our arguments, its keys checked against `config_class` (SFTConfig,
    DPOConfig): a typo fails before the model loads, and a key that has its own setting names it."""
    import dataclasses
    import difflib

    known = {f.name for f in dataclasses.fields(config_class)}
    fields = TrainConfig.model_fields
    for key in extra:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"train.trainer_extra: {key} is not an argument of {config_class.__name__}{hint}")
        if key in arguments and key not in OVERRIDABLE:
            own = next((name for name in fields if name == key), None) or _own_setting(key)
            raise ConfigError(f"train.trainer_extra: {key} is set by train.{own}; set that instead")
    return {**arguments, **extra}


def _own_setting(key: str) -> str:
    return {
        "num_train_epochs": "epochs",
        "per_device_train_batch_size": "batch_size",
        "per_device_eval_batch_size": "batch_size",
        "gradient_accumulation_steps": "gradient_accumulation (or global_batch_size)",
        "warmup_steps": "warmup_ratio",
        "lr_scheduler_type": "scheduler",
        "output_dir": "--out",
        "eval_strategy": "validation_characters",
        "beta": "dpo_beta",
        "use_cpu": "bf16 / the machine",
    }.get(key, key)


def _loss_line_callback() -> Any:
    from transformers import TrainerCallback

    from opencharacter.train.progress import StepClock

    class LossLine(TrainerCallback):
        """One short line per log: step/total, loss, validation loss (DPO: reward accuracy), rate and
        ETA — not raw dicts."""

        last = ""
        clock: StepClock | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.clock = StepClock(state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            parts = [f"step {state.global_step}/{state.max_steps}"]
            if "loss" in logs:
                parts.append(f"loss {float(logs['loss']):.4f}")
            if "rewards/accuracies" in logs:
                parts.append(f"reward accuracy {float(logs['rewards/accuracies']):.2f}")
            if "eval_loss" in logs:
                parts.append(f"validation loss {float(logs['eval_loss']):.4f}")
            if "eval_rewards/accuracies" in logs:
                parts.append(f"validation reward accuracy {float(logs['eval_rewards/accuracies']):.2f}")
            line = "  " + " · ".join(parts)
            # The final evaluate() repeats the last validation line (only its rate would differ).
            if len(parts) == 1 or line == self.last:
                return
            self.last = line
            rate = self.clock.rate_and_eta(state.global_step) if self.clock is not None else ""
            print(line + (f" · {rate}" if rate else ""), file=sys.stderr, flush=True)

    return LossLine()


def last_checkpoint(directory: Path) -> str | None:
    checkpoints = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def fit(trainer: Any, checkpoints: Path, resume: bool, has_validation: bool) -> dict[str, float]:
    """Train (from the last checkpoint when resuming) with our progress line; the final validation metrics."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_loss_line_callback())
    trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints) if resume else None)
    if not has_validation:
        return {}
    # With step-wise evaluation transformers already evaluates after the last step: reuse that pass
    # (same weights, same held-out data) instead of paying for a second one.
    step = trainer.state.global_step
    done = [e for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == step]
    return dict(done[-1]) if done else dict(trainer.evaluate())


def save_model(trainer: Any, tokenizer: Any, out: Path, config: TrainConfig, base_id: str, base_model: str) -> None:
    """The weights a user loads: the trained adapter only (DPO keeps a frozen copy of `init_adapter`
    as its reference, named 'ref': not part of the result), or the full model.

    Every rank calls this: `trainer.save_model` gathers FSDP / ZeRO-3 shards (a collective) and
    rank 0 writes them; the rest of the directory is rank 0's.
    """
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    shutil.rmtree(out / "ref", ignore_errors=True)  # peft saves other adapters in subfolders
    (out / "training_args.bin").unlink(missing_ok=True)
    if config.method != "full":
        record_adapter_base(out, base_id)
    tokenizer.save_pretrained(out)
    if config.merge and config.method != "full":
        merge_adapter(trainer, tokenizer, out, base_model)


def merge_adapter(trainer: Any, tokenizer: Any, out: Path, base_model: str) -> None:
    """`out/merged`: the adapter merged into its base. In one process the trained model merges in
    place; under a launcher its weights may be shards, so rank 0 loads the saved adapter afresh."""
    if trainer.args.world_size > 1 or trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(resolve_model_path(base_model), dtype="auto")
        model = PeftModel.from_pretrained(base, str(out))
    else:
        model = trainer.model
        if "ref" in model.peft_config:
            model.delete_adapter("ref")
    merged = model.merge_and_unload()
    merged.save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")


def write_reports(out: Path, meta: dict[str, Any], history: list[dict[str, Any]]) -> None:
    (out / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "loss_history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    plot_losses(history, out / "loss.png", meta["method"])
    write_model_card(out, meta)


def result_meta(config: TrainConfig, result: TrainResult, base_model: str, data: str, version: str | None) -> dict:
    """`opencharacter.json`: what our loader resolves (e.g. 'embedded' → its converted files) and what
    others load, plus how the model was made."""
    return {
        "base_model": base_model,
        "base_model_id": result.base_model_id,
        "memory_plan": result.plan,
        "peak_rss_bytes": result.peak_rss,
        "method": config.method,
        "init_adapter": config.init_adapter,
        "system_prompt_version": version,
        "data": data,
        "config": config.model_dump(mode="json"),
        "train_examples": result.train_examples,
        "validation_examples": result.validation_examples,
        "truncated": result.truncated,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_validation_loss": result.final_validation_loss,
        **({"rewards": result.rewards} if result.rewards else {}),
    }


def finish(
    trainer: Any, config: TrainConfig, out: Path, loaded: LoadedBase, plan: MemoryPlan, counts: tuple[int, int, int]
) -> TrainResult:
    """Save the model, then the result, whose meta and reports the caller writes after adding its own."""
    base_id = shareable_base_id(loaded.base_model)
    save_model(trainer, loaded.tokenizer, out, config, base_id, loaded.base_model)
    history = [dict(entry) for entry in trainer.state.log_history]
    train_losses = [e["loss"] for e in history if "loss" in e]
    return TrainResult(
        out=out,
        train_examples=counts[0],
        validation_examples=counts[1],
        truncated=counts[2],
        steps=trainer.state.global_step,
        losses=history,
        final_train_loss=train_losses[-1] if train_losses else None,
        peak_rss=peak_rss_bytes(),
        plan=plan.as_dict(),
        base_model_id=base_id,
        method=config.method,
        main_process=trainer.is_world_process_zero(),
    )


def shareable_base_id(model: str) -> str:
    """The base model as anyone can load it: the hub id of the embedded model, else what was given."""
    from opencharacter.models.embedded import EMBEDDED_HUB_ID, EMBEDDED_NAME

    return EMBEDDED_HUB_ID if model == EMBEDDED_NAME else model


def record_adapter_base(out: Path, base_id: str) -> None:
    """peft writes the path the base was loaded from (here, this machine's cache): name the hub id,
    so plain peft / transformers / vLLM load the adapter anywhere. Our own loader still resolves
    the local files through `opencharacter.json`."""
    path = out / "adapter_config.json"
    adapter = json.loads(path.read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
