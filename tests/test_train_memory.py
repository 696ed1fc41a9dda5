"""Frugal CPU training: the chunked loss is the model's own loss, the plan keeps the effective batch,
TRL's collator keeps our answers-only labels, progress has a rate and an ETA."""

from __future__ import annotations

import pytest

from opencharacter.config import TrainConfig
from opencharacter.train.masking import IGNORE, tokenize_conversation
from opencharacter.train.memory import memory_plan
from opencharacter.train.progress import StepClock, format_seconds

MESSAGES = [
    {"role": "system", "content": "You are Ines, a lighthouse keeper on a windy coast."},
    {"role": "user", "content": "What do you do all day?"},
    {"role": "assistant", "content": "I wind the clocks, mend the nets and watch the sea for ships."},
    {"role": "user", "content": "Is it lonely?"},
    {"role": "assistant", "content": "Never, the gulls talk back."},
]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opencharacter.models.loading import resolve_model_path

    path = resolve_model_path("embedded")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


def _batch(tokenizer):
    import torch

    rows = [tokenize_conversation(tokenizer, MESSAGES[:k], 4096) for k in (3, 5)]
    width = max(len(r.input_ids) for r in rows)
    pad = tokenizer.eos_token_id
    ids = torch.tensor([r.input_ids + [pad] * (width - len(r.input_ids)) for r in rows])
    labels = torch.tensor([r.labels + [IGNORE] * (width - len(r.labels)) for r in rows])
    mask = torch.tensor([[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.slow
def test_chunked_answer_loss_equals_the_models_own_loss_and_gradient(model_and_tokenizer):
    import torch

    from opencharacter.train.loss import answer_loss

    model, tokenizer = model_and_tokenizer
    inputs = _batch(tokenizer)
    layer = model.model.layers[-1].mlp.down_proj.weight
    reference = model(**inputs).loss
    (expected,) = torch.autograd.grad(reference, layer)
    # Chunks of 7 positions: many chunks, and a ragged last one.
    from opencharacter.train import loss as loss_module

    loss = loss_module.chunked_answer_loss(
        model.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state,
        inputs["labels"],
        model.get_output_embeddings(),
        chunk=7,
    )
    (got,) = torch.autograd.grad(loss, layer)
    assert torch.allclose(loss, reference, atol=1e-5), (loss, reference)
    # fp32 sums in another order: compare the gradient as a whole, relative to its size.
    assert float((got - expected).norm() / expected.norm()) < 1e-4
    # With num_items_in_batch (gradient accumulation), the sum is divided by the whole batch's count;
    # answer_loss goes through the model's own (patched) forward, as a DDP/FSDP wrapper calls it.
    total = answer_loss(loss_module.add_chunked_loss(model), inputs, num_items_in_batch=1000)
    labelled = int((inputs["labels"][:, 1:] != IGNORE).sum())
    assert torch.allclose(total * 1000 / labelled, reference, atol=1e-5)


def test_trl_collator_keeps_our_answers_only_labels(model_and_tokenizer):
    """Answers-only loss relies on TRL keeping the `labels` we hand it: check the installed TRL."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    _, tokenizer = model_and_tokenizer
    rows = [tokenize_conversation(tokenizer, MESSAGES[:k], 4096) for k in (3, 5)]
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.eos_token_id)
    batch = collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    for index, row in enumerate(rows):
        kept = batch["labels"][index, : len(row.labels)].tolist()
        assert kept == row.labels, "the collator replaced our labels"
        assert set(batch["labels"][index, len(row.labels) :].tolist()) <= {IGNORE}
    assert (batch["labels"] == IGNORE).any() and (batch["labels"] != IGNORE).any()


@pytest.mark.parametrize(
    ("settings", "micro", "accumulation", "checkpointing"),
    [
        ({}, 1, 8, True),  # 8 × 1024 tokens: one dialogue per pass, eight accumulated
        ({"batch_size": 4, "max_length": 384}, 2, 2, True),  # the demo's settings
        ({"batch_size": 6, "max_length": 256}, 3, 2, True),  # the largest divisor of 6 within 1024 tokens
        ({"batch_size": 4, "max_length": 64}, 4, 1, False),  # small: no split, no recomputation
        ({"batch_size": 8, "gradient_accumulation": 2}, 1, 16, True),
        ({"micro_batch_tokens": None}, 8, 1, True),
        ({"gradient_checkpointing": False, "chunked_loss": False}, 1, 8, False),
    ],
)
def test_cpu_memory_plan_keeps_the_effective_batch(settings, micro, accumulation, checkpointing):
    config = TrainConfig(**settings)
    plan = memory_plan(config, cuda=False)
    assert (plan.micro_batch, plan.accumulation, plan.gradient_checkpointing) == (micro, accumulation, checkpointing)
    assert plan.micro_batch * plan.accumulation == config.batch_size * config.gradient_accumulation
    assert plan.chunked_loss == settings.get("chunked_loss", True)
    on_gpu = memory_plan(config, cuda=True)
    assert on_gpu.micro_batch == config.batch_size and not on_gpu.chunked_loss


def test_step_clock_reports_rate_and_eta():
    clock = StepClock(start_step=10, total_steps=110, now=0.0)
    assert clock.rate_and_eta(10, now=5.0) == ""  # nothing done yet: no guess
    assert clock.rate_and_eta(20, now=20.0) == "2.0 s/step · ETA 3m00s"
    assert clock.rate_and_eta(60, now=10.0) == "5.00 steps/s · ETA 10s"
    assert format_seconds(3725) == "1h02m"
