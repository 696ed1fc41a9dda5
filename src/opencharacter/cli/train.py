"""`opencharacter train`: supervised fine-tuning on a run's dialogues (or any messages data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.report import console
from opencharacter.config import TrainConfig, build
from opencharacter.errors import ConfigError
from opencharacter.local_paths import check_data_spec, check_model_spec, require_exists


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Output directory for the adapter / model.")],
    run: Annotated[Path | None, typer.Option("--run", help="Run directory whose dialogues to train on.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Or: messages JSONL/Parquet, a datasets dir, or a hub dataset id.")
    ] = None,
    model: opt.Model = None,
    lora: Annotated[
        bool | None,
        typer.Option("--lora/--full", help="LoRA adapters (default) or full fine-tuning.", metavar=opt.FLAG),
    ] = None,
    config: opt.ConfigFile = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Dialogues per step (default 8).")] = None,
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
) -> None:
    """Fine-tune on in-character dialogues: loss on answers only, held-out characters for validation."""
    if (run is None) == (data is None):
        raise ConfigError("give exactly one of --run DIR or --data PATH")
    if run is not None:
        require_exists(run, "--run", "run directory")
        if not (run / "dialogues.jsonl").is_file():
            raise ConfigError(f"--run {run}: no dialogues.jsonl there (make them with `opencharacter synthesize`)")
    else:
        check_data_spec(str(data))
    check_model_spec(model)
    section = dict(opt.config_data(config).get("train") or {})
    flags = {
        "model": model,
        "method": None if lora is None else ("lora" if lora else "full"),
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "max_length": max_length,
        "strategies": strategy,
        "merge": merge or None,
    }
    section.update({k: v for k, v in flags.items() if v is not None})
    train_config = build(TrainConfig, section, str(config or "flags"))
    from opencharacter.train.memory import format_bytes
    from opencharacter.train.trainer import train  # torch, transformers and trl load only here

    result = train(train_config, run if run is not None else str(data), out, resume=resume)
    plan = result.plan
    console.print(
        f"trained {result.steps} steps on {result.train_examples} dialogues "
        f"({result.validation_examples} from held-out characters for validation, {result.truncated} truncated)\n"
        f"final training loss {result.final_train_loss}, validation loss {result.final_validation_loss}\n"
        f"memory: peak RSS {format_bytes(result.peak_rss)} (micro-batch {plan['micro_batch']} × "
        f"{plan['accumulation']} accumulated, gradient checkpointing {_on(plan['gradient_checkpointing'])}, "
        f"{'chunked' if plan['chunked_loss'] else 'full-logits'} loss)\n"
        f"model: {result.out}  (adapter or weights, tokenizer, README.md, loss.png, opencharacter.json); "
        f"base model {result.base_model_id}"
    )


def _on(flag: bool) -> str:
    return "on" if flag else "off"
