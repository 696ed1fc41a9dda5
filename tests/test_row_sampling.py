"""The per-request sampler draws from exactly transformers' temperature + top-p distribution."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from opencharacter.backends import row_sampling  # noqa: E402
from opencharacter.backends.row_sampling import RowSampler  # noqa: E402

PROBS = [0.5, 0.3, 0.15, 0.04, 0.01]
ROWS = 6000


def draw(sampler, scores):
    forced = sampler(None, scores)
    assert bool((forced.max(dim=-1).values == 0).all()) and bool((torch.isfinite(forced).sum(dim=-1) == 1).all())
    return forced.argmax(dim=-1)


def frequencies(tokens, vocab):
    return [float((tokens == t).float().mean()) for t in range(vocab)]


@pytest.mark.parametrize("candidates", [256, 2])  # 2: the nucleus is larger, so the whole vocabulary is sorted
def test_top_p_keeps_the_nucleus_and_renormalises(monkeypatch, candidates):
    monkeypatch.setattr(row_sampling, "_CANDIDATES", candidates)
    scores = torch.log(torch.tensor([PROBS] * ROWS))
    tokens = draw(RowSampler(list(range(ROWS)), temperature=1.0, top_p=0.9), scores)
    # Mass before token 2 is 0.8 < 0.9 (kept); before token 3 it is 0.95 (dropped).
    expected = [p / 0.95 for p in PROBS[:3]] + [0.0, 0.0]
    for got, want in zip(frequencies(tokens, 5), expected, strict=True):
        assert got == pytest.approx(want, abs=0.025)


def test_temperature_without_top_p_and_seeded_rows_repeat():
    scores = torch.log(torch.tensor([PROBS] * ROWS))
    tokens = draw(RowSampler(list(range(ROWS)), temperature=2.0, top_p=1.0), scores)
    softened = [math.sqrt(p) for p in PROBS]  # p ** (1 / T), renormalised
    for got, want in zip(frequencies(tokens, 5), [p / sum(softened) for p in softened], strict=True):
        assert got == pytest.approx(want, abs=0.025)
    again = draw(RowSampler(list(range(ROWS)), temperature=2.0, top_p=1.0), scores)
    assert torch.equal(tokens, again)  # the same seeds, the same draws


def test_masked_tokens_are_never_drawn_and_a_fully_masked_row_does_not_fail():
    scores = torch.log(torch.tensor([PROBS] * 200))
    scores[:, 0] = float("-inf")  # e.g. a grammar mask
    scores[-1, :] = float("-inf")  # a finished row: everything masked
    tokens = draw(RowSampler(list(range(200)), temperature=0.7, top_p=0.95), scores)
    assert not bool((tokens[:-1] == 0).any())
