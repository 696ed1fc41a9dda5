"""`train:` — student training (SFT, DPO, GRPO)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from opencharacter.config.base import Config
from opencharacter.config.grpo import GRPOSettings


class LauncherConfig(Config):
    """How a training job is started in its own processes on this machine (`train.launcher`)."""

    nproc_per_node: int = Field(1, ge=1, description="Processes (one per GPU) on this machine.")
    config: str | None = Field(
        None,
        description="An accelerate config file (examples/accelerate/fsdp.yaml): start with `accelerate launch` "
        "instead of torchrun.",
    )
    args: list[str] = Field(
        default_factory=list,
        description="More launcher arguments, placed before the module, e.g. [--master_port, '29600'].",
    )


class TrainConfig(Config):
    model: str = Field("embedded", description="Base model: hub id, local directory, or 'embedded'.")
    method: Literal["lora", "full", "dpo", "grpo"] = Field(
        "lora",
        description="SFT with LoRA adapters (peft), full SFT, or DPO with LoRA on preferences.jsonl "
        "(best vs worst candidate), or GRPO with LoRA on weighted rewards (`grpo:`).",
    )
    grpo: GRPOSettings = Field(default_factory=GRPOSettings, description="GRPO only: rewards and sampling.")
    dpo_beta: float = Field(0.1, gt=0, description="DPO: strength of the pull towards the reference model.")
    init_adapter: str | None = Field(
        None,
        description="Start from this trained adapter (a `train --out` directory), e.g. DPO after SFT; "
        "it is also the DPO reference model.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list such as [q_proj, v_proj]."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (LoRA; use ~1e-5 for full).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training dialogues.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(8, ge=1, description="Dialogues per device per step.")
    gradient_accumulation: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    global_batch_size: int | None = Field(
        None,
        ge=1,
        description="Dialogues per optimizer update over all processes; fixes the effective batch whatever the "
        "number of GPUs (gradient accumulation = global / (batch_size x processes); replaces gradient_accumulation).",
    )
    max_length: int = Field(1024, ge=16, description="Tokens per dialogue; longer ones are truncated and counted.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    scheduler: str = Field("cosine", description="Learning-rate schedule (any transformers scheduler name).")
    lr_scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of the schedule, e.g. {lr_end: 1.0e-6, power: 1.0} for `polynomial` "
        "(the paper's linear 1e-5 -> 1e-6).",
    )
    optim: str = Field("adamw_torch", description="Optimiser (a transformers `optim` name, e.g. adamw_torch_fused).")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 (the paper: 0.95).")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")
    bf16: bool | None = Field(
        None,
        description="bf16 autocast over float32 master weights (full fine-tuning keeps float32 weights; LoRA "
        "keeps its frozen base in bf16); default: on where CUDA supports bf16.",
    )
    attn_implementation: str | None = Field(
        None, description="Attention kernel: sdpa, flash_attention_2, eager (default: transformers' choice)."
    )
    chat_template: str | None = Field(
        None,
        description="A Jinja chat template (or a path to a .jinja file) for a base backbone that has none; "
        "it is saved with the tokenizer.",
    )
    report_to: list[str] = Field(
        default_factory=list, description="Where transformers reports metrics: wandb, tensorboard, trackio, ..."
    )
    fsdp: str | None = Field(
        None, description="transformers' `fsdp` option, e.g. 'full_shard auto_wrap' (under torchrun/accelerate)."
    )
    fsdp_config: dict[str, Any] | str | None = Field(None, description="transformers' `fsdp_config`: a dict or file.")
    deepspeed: str | None = Field(
        None, description="A DeepSpeed config file (examples/deepspeed/zero3.json); needs `pip install deepspeed`."
    )
    trainer_extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other SFTConfig/DPOConfig argument, passed through (keys checked against them); "
        "settings above cannot be given here.",
    )
    launcher: LauncherConfig | None = Field(
        None,
        description="Train in child processes started by torchrun (or `accelerate launch` with `config`): "
        "`{nproc_per_node: 8}`. Used by `recipe` (its DPO/GRPO students inherit it) and by `train` when not "
        "already launched. How, not what: changing it does not retrain a finished recipe student.",
    )
    packing: bool = Field(False, description="Pack several dialogues into one sequence (TRL BFD packing).")
    seed: int = Field(0, description="Seed for the character split, shuffling and initialisation.")
    validation_characters: float = Field(
        0.1, ge=0, lt=1, description="Fraction of *characters* held out; their dialogues give the validation loss."
    )
    eval_steps: int = Field(10, ge=1, description="Validation-loss interval in optimizer steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint interval in optimizer steps.")
    logging_steps: int = Field(1, ge=1, description="Training-loss logging interval.")
    merge: bool = Field(False, description="Also write the LoRA weights merged into the base model (merged/).")
    gradient_checkpointing: bool | None = Field(
        None,
        description="Trade compute for memory (recompute activations in the backward pass); default: on with CUDA, "
        "and on CPU when a micro-batch holds 512 tokens or more.",
    )
    chunked_loss: bool | None = Field(
        None,
        description="Score answer tokens in small chunks instead of materialising full-vocabulary logits; "
        "default: on CPU (on GPUs TRL's fused LM head does the same).",
    )
    micro_batch_tokens: int | None = Field(
        1024,
        ge=16,
        description="CPU: at most this many tokens (micro-batch × max_length) per forward pass; the batch is split "
        "and gradients accumulated, so the effective batch and the loss stay the same. None: no split.",
    )
    strategies: list[Literal["generate", "rewrite"]] | None = Field(
        None, description="Train only on these strategies (default: all dialogues)."
    )
    sources: list[str] | None = Field(
        None,
        description="Train only on dialogues from these instruction sources (a run's `source` names, e.g. "
        "[lima, alpaca]; default: all).",
    )

    @model_validator(mode="after")
    def _one_sharding(self) -> TrainConfig:
        if self.fsdp and self.deepspeed:
            raise ValueError("give one of fsdp and deepspeed, not both")
        return self
