"""The per-request sampler: transformers' temperature / top-k / top-p distribution, drawn from
counter-based uniforms that depend only on (row seed, step), for all rows at once."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from opencharacter.backends import row_sampling  # noqa: E402
from opencharacter.backends.row_sampling import RowSampler, counter_uniforms, seed_words  # noqa: E402

PROBS = [0.5, 0.3, 0.15, 0.04, 0.01]
ROWS = 6000


def draw(sampler, scores):
    forced = sampler(None, scores)
    assert bool((forced.max(dim=-1).values == 0).all()) and bool((torch.isfinite(forced).sum(dim=-1) == 1).all())
    return forced.argmax(dim=-1)


def frequencies(tokens, vocab):
    return [float((tokens == t).float().mean()) for t in range(vocab)]


def assert_frequencies(tokens, expected):
    for got, want in zip(frequencies(tokens, len(expected)), expected, strict=True):
        assert got == pytest.approx(want, abs=0.025)


@pytest.mark.parametrize("candidates", [256, 2])  # 2: the nucleus is larger, so those rows are sorted in full
def test_top_p_keeps_the_nucleus_and_renormalises(monkeypatch, candidates):
    monkeypatch.setattr(row_sampling, "_CANDIDATES", candidates)
    scores = torch.log(torch.tensor([PROBS] * ROWS))
    tokens = draw(RowSampler(list(range(ROWS)), temperature=1.0, top_p=0.9), scores)
    # Mass before token 2 is 0.8 < 0.9 (kept); before token 3 it is 0.95 (dropped).
    assert_frequencies(tokens, [p / 0.95 for p in PROBS[:3]] + [0.0, 0.0])


def test_temperature_without_top_p_and_seeded_rows_repeat():
    scores = torch.log(torch.tensor([PROBS] * ROWS))
    tokens = draw(RowSampler(list(range(ROWS)), temperature=2.0, top_p=1.0), scores)
    softened = [math.sqrt(p) for p in PROBS]  # p ** (1 / T), renormalised
    assert_frequencies(tokens, [p / sum(softened) for p in softened])
    again = draw(RowSampler(list(range(ROWS)), temperature=2.0, top_p=1.0), scores)
    assert torch.equal(tokens, again)  # the same seeds, the same draws


def test_top_k_then_top_p_on_the_renormalised_top_k():
    scores = torch.log(torch.tensor([PROBS] * ROWS))
    tokens = draw(RowSampler(list(range(ROWS)), temperature=1.0, top_p=1.0, top_k=2), scores)
    assert_frequencies(tokens, [0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0, 0.0])
    # Top 3 renormalised: 0.526, 0.316, 0.158; mass before token 2 is 0.842 < 0.85, so it stays.
    tokens = draw(RowSampler(list(range(ROWS)), temperature=1.0, top_p=0.85, top_k=3), scores)
    assert_frequencies(tokens, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0, 0.0])
    tokens = draw(RowSampler(list(range(ROWS)), temperature=1.0, top_p=0.8, top_k=3), scores)
    assert_frequencies(tokens, [0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0, 0.0])


def test_masked_tokens_are_never_drawn_and_a_fully_masked_row_does_not_fail():
    scores = torch.log(torch.tensor([PROBS] * 200))
    scores[:, 0] = float("-inf")  # e.g. a grammar mask
    scores[-1, :] = float("-inf")  # a finished row: everything masked
    tokens = draw(RowSampler(list(range(200)), temperature=0.7, top_p=0.95), scores)
    assert not bool((tokens[:-1] == 0).any())


def test_a_row_depends_only_on_its_seed_and_step_not_on_its_companions():
    vocab = 50
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(8, vocab, generator=generator)  # the probe row's logits at 8 steps
    alone, crowded = RowSampler([7], 0.9, 0.95), RowSampler([3, 7, None, 2**70], 0.9, 0.95)
    got_alone, got_crowded = [], []
    for step in range(8):
        companions = torch.randn(4, vocab, generator=generator)
        companions[1] = probe[step]
        got_alone.append(int(draw(alone, probe[step : step + 1])[0]))
        got_crowded.append(int(draw(crowded, companions)[1]))
    assert got_alone == got_crowded
    assert len(set(got_alone)) > 1  # each step draws a fresh uniform


def test_the_full_sort_path_draws_exactly_the_tokens_of_the_candidate_path(monkeypatch):
    # An accelerator sorts every row (no host sync to decide); the thresholds, and so the tokens, are the same.
    scores = torch.randn(400, 1000, generator=torch.Generator().manual_seed(1)) * 3
    seeds = list(range(400))
    on_cpu = draw(RowSampler(seeds, 1.0, 0.9), scores)
    monkeypatch.setattr(row_sampling, "sorts_every_row", lambda device: True)
    assert torch.equal(draw(RowSampler(seeds, 1.0, 0.9), scores), on_cpu)


@pytest.mark.parametrize(("top_p", "top_k"), [(0.9, 0), (1.0, 0), (0.9, 5)])
def test_the_accelerator_path_never_reads_a_value_back_to_the_host(monkeypatch, top_p, top_k):
    # Tensors on the meta device have no values: any host sync (bool(), .item(), .tolist()) raises.
    monkeypatch.setattr(row_sampling, "sorts_every_row", lambda device: True)
    sampler = RowSampler([1, 2, 3], 0.7, top_p, top_k)
    for _ in range(3):
        forced = sampler(None, torch.empty(3, 1000, device="meta"))
        assert forced.shape == (3, 1000) and forced.device.type == "meta"


def test_counter_uniforms_are_uniform_independent_and_exact_integer_arithmetic():
    x = torch.tensor([0, 1, 0xFFFF, 0x10000, 0xDEADBEEF, 0xFFFFFFFF], dtype=torch.int64)
    for constant in (0x7FEB352D, 0x846CA68B):  # the overflow-free multiply equals Python's exact one
        assert row_sampling._mul32(x, constant).tolist() == [(v * constant) % 2**32 for v in x.tolist()]
    seeds = torch.tensor(seed_words(list(range(2000))), dtype=torch.int64)
    table = counter_uniforms(seeds, 0, 64)  # 2000 seeds x 64 steps
    assert float(table.min()) >= 0.0 and float(table.max()) < 1.0
    counts = torch.histc(table, bins=16, min=0.0, max=1.0)
    expected = table.numel() / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45  # 15 degrees of freedom: p < 1e-4 above this
    # Neighbouring seeds and neighbouring steps are uncorrelated.
    assert abs(float(torch.corrcoef(torch.stack([table[:-1].flatten(), table[1:].flatten()]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(torch.stack([table[:, :-1].flatten(), table[:, 1:].flatten()]))[0, 1])) < 0.02
    # A later block continues the same stream.
    assert torch.equal(counter_uniforms(seeds, 60, 4), table[:, 60:64])


def test_the_repetition_penalty_counts_generated_tokens_never_the_prompt():
    """transformers' own `repetition_penalty` also penalises prompt tokens: a character then avoids
    the words of its own profile (the recipe's lexical fidelity fell from 0.52 to 0.36 MRR)."""
    import torch

    from opencharacter.backends.transformers_local import repetition_penalty

    assert repetition_penalty(1.0, 3) == []
    (processor,) = repetition_penalty(2.0, 3)
    # Left-padded prompt of width 3 (tokens 0, 1, 2), then one generated token (3).
    input_ids = torch.tensor([[0, 1, 2, 3]])
    scores = torch.tensor([[1.0, 1.0, -1.0, 1.0, 1.0]])
    out = processor(input_ids, scores.clone())
    assert out[0, :3].tolist() == [1.0, 1.0, -1.0], "prompt tokens keep their scores"
    assert out[0, 3].item() == 0.5, "a generated token is penalised"
    assert out[0, 4].item() == 1.0


def test_cached_local_calls_say_how_they_were_decoded():
    """Calls cached before the penalty stopped counting the prompt decode differently: new keys."""
    from opencharacter.backends import build_backend
    from opencharacter.backends.transformers_local import DECODING
    from opencharacter.config import BackendConfig

    backend = build_backend(BackendConfig(backend="transformers", model="some/hub-model"))
    assert backend.cache_identity == f"some/hub-model+{DECODING}"
