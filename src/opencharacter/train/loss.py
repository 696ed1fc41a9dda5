"""Next-token loss on answer tokens without materialising full-vocabulary logits.

A causal LM's forward projects every position onto the whole vocabulary (49 152 entries for
SmolLM2): at batch 8 × 1024 tokens that is 1.6 GB of fp32 logits, and their softmax and gradient
are as large again. TRL's fused LM head avoids this on GPUs, but on CPU it scores tiles of
4096 tokens × 32 768 vocabulary entries with plain torch ops, whose temporaries alone reach
gigabytes. Here the backbone's hidden states at the labelled positions only (answers-only loss
leaves the rest at −100) are scored in small chunks, each under activation checkpointing, so at most
one chunk's logits exist at a time, in the forward and in the backward pass.

The value is exactly the usual one: the sum of the token losses divided by `num_items_in_batch`
(the labelled tokens of the whole accumulated batch, as transformers' Trainer passes it), or by the
labelled tokens of this micro-batch when it is not given.

The loss runs *inside* the model's forward (`add_chunked_loss`, the way TRL adds its fused head):
DDP arms its gradient all-reduce, FSDP unshards and DeepSpeed gathers parameters in the wrapper's
forward, so a loss that reached past the wrapper into the decoder would train each rank on its own
gradients (DDP) or on empty weights (ZeRO-3).
"""

from __future__ import annotations

import functools
import types
from typing import Any

IGNORE = -100
CHUNK_TOKENS = 256
"""Positions scored per chunk: 256 × 49 152 fp32 logits = 48 MB, small next to the model."""


def _chunk_loss(hidden: Any, weight: Any, bias: Any, targets: Any) -> Any:
    import torch

    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


def chunked_answer_loss(
    hidden: Any, labels: Any, lm_head: Any, num_items_in_batch: Any = None, chunk: int = CHUNK_TOKENS
) -> Any:
    """Summed cross-entropy of `lm_head(hidden)` against the next-token `labels`, over labelled positions.

    `hidden` is the backbone's last hidden state `[batch, seq, dim]`, `labels` the unshifted labels
    `[batch, seq]` (−100 where no loss is wanted), as a causal LM's own forward takes them.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    shifted = labels[:, 1:]
    mask = shifted != IGNORE
    states = hidden[:, :-1][mask]
    targets = shifted[mask]
    # Zero labelled tokens still yields a differentiable zero, so backward() works on such a batch.
    total = hidden.sum() * 0.0
    for start in range(0, targets.numel(), chunk):
        piece = slice(start, start + chunk)
        total = total + checkpoint(
            _chunk_loss, states[piece], lm_head.weight, lm_head.bias, targets[piece], use_reentrant=False
        )
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def _full(tensor: Any) -> Any:
    """FSDP2 shards parameters as DTensors; the chunks multiply plain tensors (gathered once per forward)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


FLAG = "chunked_loss"
"""`model(**inputs, chunked_loss=True)`: the forward returns our loss instead of logits."""


def add_chunked_loss(model: Any) -> Any:
    """Give the causal LM `model` (not its peft or DDP/FSDP wrapper) a forward that, called with
    `chunked_loss=True`, runs the backbone and returns `CausalLMOutputWithPast(loss=…)` from
    the chunked loss; without the flag it is the forward it had (generation is unchanged)."""
    if getattr(model, "_opencharacter_chunked_loss", False):
        return model
    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, chunked_loss: bool = False, **kwargs: Any) -> Any:
        if not chunked_loss:
            return original(*args, **kwargs)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        labels = kwargs.pop("labels")
        count = kwargs.pop("num_items_in_batch", None)
        inputs = {k: kwargs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in kwargs}
        hidden = self.base_model(*args, **inputs, use_cache=False).last_hidden_state
        head = self.get_output_embeddings()
        bias = None if head.bias is None else _full(head.bias)
        full_head = types.SimpleNamespace(weight=_full(head.weight), bias=bias)
        return CausalLMOutputWithPast(loss=chunked_answer_loss(hidden, labels, full_head, count))

    model.forward = types.MethodType(forward, model)
    model._opencharacter_chunked_loss = True
    return model


def answer_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """The loss on `inputs` (input_ids, attention_mask, labels, …), chunk by chunk, through `model`'s
    own forward: `model` may be wrapped (peft, DDP, FSDP, DeepSpeed) around a causal LM that
    `add_chunked_loss` patched."""
    kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
    if num_items_in_batch is not None:
        kwargs["num_items_in_batch"] = num_items_in_batch
    return model(**kwargs, **{FLAG: True}).loss


def causal_lm(model: Any) -> Any:
    """The causal LM inside a peft wrapper (TRL patches the same one)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
