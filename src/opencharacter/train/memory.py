"""How training fits in a laptop's memory on CPU: micro-batches, checkpointing, a chunked loss.

Measured on the embedded 135M model (bench/train_memory.py): at the old CPU defaults (batch 8 ×
1024 tokens, full logits, no checkpointing) one step needs more than 20 GB. Three things bring it
down, each without changing what is learned:

- micro-batches of at most `micro_batch_tokens` tokens, with gradient accumulation making up the
  configured batch (transformers normalises by the labelled tokens of the whole accumulated batch,
  so the loss and its gradient are those of the full batch);
- gradient checkpointing once a micro-batch holds enough tokens for activations to dominate;
- the chunked answers-only loss of `train/loss.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from opencharacter.config import TrainConfig
from opencharacter.errors import ConfigError

CHECKPOINTING_FROM_TOKENS = 512
"""Below this many tokens per micro-batch activations are small and recomputing them only costs time."""


@dataclass(frozen=True)
class MemoryPlan:
    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool
    chunked_loss: bool
    processes: int = 1
    """Data-parallel processes (torchrun/accelerate ranks): the effective batch is micro × accumulation × this."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_plan(config: TrainConfig, cuda: bool, sequences_per_example: int = 1, world_size: int = 1) -> MemoryPlan:
    """The micro-batch, accumulation, checkpointing and loss that make `config`'s batch fit.

    A DPO example is a pair: chosen and rejected go through the model together, two sequences.
    With `global_batch_size`, accumulation makes up that many dialogues per optimizer update over
    all `world_size` processes (each takes `batch_size` per step), so one GPU and eight train alike.
    """
    micro = config.batch_size
    tokens = config.max_length * sequences_per_example
    if not cuda and config.micro_batch_tokens is not None:
        fits = max(1, config.micro_batch_tokens // tokens)
        # The largest divisor of the batch that fits, so the effective batch is exactly the configured one.
        micro = max(d for d in range(1, config.batch_size + 1) if config.batch_size % d == 0 and d <= fits)
    accumulation = config.gradient_accumulation * (config.batch_size // micro)
    if config.global_batch_size is not None:
        per_update = micro * world_size
        if config.global_batch_size % per_update:
            raise ConfigError(
                f"global_batch_size {config.global_batch_size} is not a multiple of {per_update} "
                f"(micro-batch {micro} x {world_size} processes); choose a multiple, or change batch_size"
            )
        accumulation = config.global_batch_size // per_update
    checkpointing = config.gradient_checkpointing
    if checkpointing is None:
        checkpointing = cuda or micro * tokens >= CHECKPOINTING_FROM_TOKENS
    chunked = (not cuda) if config.chunked_loss is None else config.chunked_loss
    return MemoryPlan(micro, accumulation, checkpointing, chunked, world_size)


def sft_trainer_class(chunked_loss: bool) -> Any:
    """TRL's SFTTrainer, or the same with the loss computed by `train/loss.py`."""
    from trl import SFTTrainer

    if not chunked_loss:
        return SFTTrainer

    from opencharacter.train.loss import add_chunked_loss, answer_loss, causal_lm

    class ChunkedLossSFTTrainer(SFTTrainer):
        """Only `compute_loss` differs: same value, computed without full-vocabulary logits.
        (TRL's token-accuracy and entropy metrics, which need those logits, are not logged.)"""

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            loss = answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # What Trainer.compute_loss does and this override must too: the count is summed over
                # all ranks while DDP averages their gradients, so each rank's loss is scaled back up.
                # Without it a 2-rank run logged half the loss and took half-size gradients.
                loss = loss * self.accelerator.num_processes
            return (loss, {"loss": loss}) if return_outputs else loss

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # After TRL patched the same model with its fused head, before accelerate wraps it.
            add_chunked_loss(causal_lm(self.model))

    return ChunkedLossSFTTrainer


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.2f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"
