"""Training under a launcher (torchrun, accelerate launch): who writes, who waits, and the one
mistake transformers would not stop.

Every rank runs the same `train()`; the launcher's environment (WORLD_SIZE, RANK) says which one
this is. Rank 0 alone writes what a user reads (the model card, `opencharacter.json`, the plots,
the split, the tokenised cache); the weights are saved by all ranks together through the trainer,
which gathers FSDP / ZeRO-3 shards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opencharacter.errors import ConfigError


def world_size() -> int:
    """Processes in this training job (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Started by a launcher (torchrun and `accelerate launch` set LOCAL_RANK), even with one process."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    """This process's rank in the job (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 of the job: the one that writes the result's files."""
    return rank() == 0


def check_launch(gpus: int | None = None) -> None:
    """Several visible GPUs without a launcher: transformers would wrap the model in nn.DataParallel
    (every GPU holds a full replica, one process feeds them all). Say how to launch instead."""
    if world_size() > 1:
        return
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        raise ConfigError(
            f"{gpus} GPUs are visible but training was not started by a launcher (it would fall back to "
            f"nn.DataParallel): run `torchrun --nproc_per_node {gpus} -m opencharacter train ...` or "
            "`accelerate launch --config_file examples/accelerate/ddp.yaml -m opencharacter train ...`, "
            f"or set `train.launcher: {{nproc_per_node: {gpus}}}` in the config (recipe too), "
            "or train on one GPU with CUDA_VISIBLE_DEVICES=0"
        )


def barrier(args: Any) -> None:
    """Wait for every rank (no-op in one process); `args` (TrainingArguments) owns the process group."""
    if args.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


@contextmanager
def main_process_first(args: Any, what: str) -> Iterator[bool]:
    """Rank 0 runs the block first (and writes its cache), the others after it, reading that cache.
    Yields whether this is rank 0. One shared filesystem (the output directory) is assumed."""
    with args.main_process_first(local=False, desc=what):
        yield args.process_index == 0
