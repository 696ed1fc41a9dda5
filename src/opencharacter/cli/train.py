"""`opencharacter train`: supervised fine-tuning on a run's dialogues (or any messages data), or DPO
on a run's preference pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.report import console
from opencharacter.config import TrainConfig, build
from opencharacter.errors import ConfigError
from opencharacter.models.paths import check_data_spec, check_model_spec, require_exists


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Output directory for the adapter / model.")],
    run: Annotated[
        Path | None,
        typer.Option("--run", help="Run directory whose dialogues (DPO: preferences.jsonl) to train on."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Or: messages JSONL/Parquet, a datasets dir, or a hub dataset id (DPO: a preferences JSONL file).",
        ),
    ] = None,
    model: opt.Model = None,
    method: Annotated[
        Literal["lora", "full", "dpo", "grpo"] | None,
        typer.Option(
            "--method",
            help="SFT with LoRA (default), full SFT, DPO with LoRA on best-vs-worst candidate pairs, or GRPO with "
            "LoRA on the weighted rewards of the config's `train.grpo` (needs --run).",
        ),
    ] = None,
    lora: Annotated[
        bool | None,
        typer.Option("--lora/--full", help="Same as --method lora / --method full.", metavar=opt.FLAG),
    ] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="DPO: pull towards the reference model (default 0.1).")
    ] = None,
    init_adapter: Annotated[
        Path | None,
        typer.Option(
            "--init-adapter",
            help="Continue from this trained adapter (a `train --out` dir); for DPO it is also the reference model.",
        ),
    ] = None,
    config: opt.ConfigFile = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Dialogues per step (default 8).")] = None,
    global_batch_size: Annotated[
        int | None,
        typer.Option("--global-batch-size", help="Dialogues per optimizer update over all processes (GPUs)."),
    ] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per dialogue (default 1024).")] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", help="Train only on generate and/or rewrite dialogues.")
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Also save the LoRA merged into the base model.", metavar=opt.FLAG)
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.", metavar=opt.FLAG)
    ] = False,
    gguf: Annotated[
        list[str] | None, typer.Option("--gguf", help="Also write the merged model as GGUF: f16 and/or q8_0.")
    ] = None,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", help="Then upload the model to this private Hub repo (owner/name).")
    ] = None,
) -> None:
    """Fine-tune on in-character dialogues (loss on answers only), or prefer the more in-character of two
    candidate answers (DPO); held-out characters for validation."""
    if (run is None) == (data is None):
        raise ConfigError("give exactly one of --run DIR or --data PATH")
    if method is not None and lora is not None and method != ("lora" if lora else "full"):
        raise ConfigError(f"--method {method} contradicts --{'lora' if lora else 'full'}; give one of them")
    if init_adapter is not None:
        require_exists(init_adapter, "--init-adapter", "adapter directory")
    check_model_spec(model)
    section = dict(opt.config_data(config).get("train") or {})
    flags = {
        "model": model,
        "method": method or (None if lora is None else ("lora" if lora else "full")),
        "dpo_beta": beta,
        "init_adapter": None if init_adapter is None else str(init_adapter),
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "global_batch_size": global_batch_size,
        "max_length": max_length,
        "strategies": strategy,
        "merge": merge or None,
    }
    section.update({k: v for k, v in flags.items() if v is not None})
    train_config = build(TrainConfig, section, str(config or "flags"))
    _check_data(train_config.method, run, data)
    from opencharacter.cli.release_steps import after_training, check_release_steps

    check_release_steps(gguf, push_to_hub)  # before an hour of training, not after
    from opencharacter.train.distributed import launched
    from opencharacter.train.memory import format_bytes

    source = run if run is not None else str(data)
    if train_config.launcher is not None and not launched():  # the config asks for torchrun / accelerate
        from opencharacter.train.launch import train_in_child

        result = train_in_child(train_config, source, out, resume=resume)
    else:
        from opencharacter.train.trainer import train  # torch, transformers and trl load only here

        result = train(train_config, source, out, resume=resume)
    if not result.main_process:  # under a launcher: rank 0 reports (and exports) for all
        return
    plan = result.plan
    dpo = result.method == "dpo"
    if result.method == "grpo":
        console.print(_grpo_lines(result))
        after_training(result.out, gguf, push_to_hub)
        return
    examples = "preference pairs" if dpo else "dialogues"
    loss = "TRL fused-head" if dpo else ("chunked" if plan["chunked_loss"] else "full-logits")
    console.print(
        f"trained {result.steps} steps on {result.train_examples} {examples} "
        f"({result.validation_examples} from held-out characters for validation, {result.truncated} truncated)\n"
        f"final training loss {result.final_train_loss}, validation loss {result.final_validation_loss}\n"
        + (_rewards_line(result.rewards) if dpo else "")
        + f"memory: peak RSS {format_bytes(result.peak_rss)} (micro-batch {plan['micro_batch']} × "
        f"{plan['accumulation']} accumulated, gradient checkpointing {_on(plan['gradient_checkpointing'])}, "
        f"{loss} loss)\n"
        f"model: {result.out}  (adapter or weights, tokenizer, README.md, loss.png, opencharacter.json); "
        f"base model {result.base_model_id}"
    )
    after_training(result.out, gguf, push_to_hub)


def _check_data(method: str, run: Path | None, data: str | None) -> None:
    """Fail before torch loads: DPO reads preference pairs, SFT dialogues."""
    from opencharacter.train.preferences import HOW_TO_MAKE, PREFERENCES_FILE

    if method == "grpo" and run is None:
        raise ConfigError("--method grpo trains from a run (its characters and dialogues): give --run DIR")
    if run is not None:
        require_exists(run, "--run", "run directory")
        needed = PREFERENCES_FILE if method == "dpo" else "dialogues.jsonl"
        if not (run / needed).is_file():
            how = HOW_TO_MAKE if method == "dpo" else "make them with `opencharacter synthesize`"
            raise ConfigError(f"--run {run}: no {needed} there ({how})")
    elif method == "dpo":
        require_exists(str(data), "--data", "preferences file")
    else:
        check_data_spec(str(data))


def _rewards_line(rewards: dict[str, float | None]) -> str:
    def shown(split: str) -> str:
        accuracy, margin = rewards.get(f"{split}_accuracy"), rewards.get(f"{split}_margin")
        return "n/a" if accuracy is None else f"accuracy {accuracy:.2f}, margin {margin:.3f}"

    return f"DPO rewards: training {shown('train')}; held-out characters {shown('validation')}\n"


def _grpo_lines(result) -> str:
    rewards = result.rewards
    parts = [
        f"{name} {values['first']:.3f} → {values['last']:.3f}"
        for name, values in rewards.items()
        if isinstance(values, dict) and "last" in values
    ]
    failed = rewards.get("failed_calls") or {}
    failures = "".join(
        f"; {count} failed {name} calls (no score, step went on)" for name, count in failed.items() if count
    )
    return (
        f"trained {result.steps} GRPO steps on {result.train_examples} prompts\n"
        f"rewards (first → last logged step): {', '.join(parts)}{failures}\n"
        f"model: {result.out}  (adapter, tokenizer, README.md, opencharacter.json); base model {result.base_model_id}"
    )


def _processes(plan: dict) -> str:
    processes = plan.get("processes", 1)
    return f" × {processes} processes" if processes > 1 else ""


def _on(flag: bool) -> str:
    return "on" if flag else "off"
