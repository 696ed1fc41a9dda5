"""`train:` — student training (SFT, DPO, GRPO)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from opencharacter.config.base import Config
from opencharacter.config.grpo import GRPOSettings


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
    max_length: int = Field(1024, ge=16, description="Tokens per dialogue; longer ones are truncated and counted.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    scheduler: str = Field("cosine", description="Learning-rate schedule (any transformers scheduler name).")
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
