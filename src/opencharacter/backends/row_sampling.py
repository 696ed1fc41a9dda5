"""Per-request sampling for batched local generation, so a seeded request gives the same text in any batch.

transformers samples a whole batch from one global RNG: a row's tokens depend on which requests
share its batch and on everything sampled before, and batch composition depends on timing. Here
each row's random numbers are a pure function of (its seed, the step): an integer hash computed for
all rows at once in tensor ops on the model's device (counter-based, like Philox or JAX's keys), so
there is no generator per row, no Python loop over rows and no host sync. The drawn token is the
only one left for greedy decoding to pick. Temperature, top-k and top-p are applied here, after
every other processor (repetition penalty, xgrammar's grammar mask), exactly where transformers'
own sampling applies them.

The draw is inverse-CDF over the kept tokens in vocabulary order: one uniform per row and step, no
sort of the probabilities into the sampled order, so ties between equally likely tokens cannot
change which token a uniform maps to. The nucleus is a probability threshold (keep every token at
least as likely as the least likely token top-p needs), found among the `_CANDIDATES` most likely
tokens; on CPU a row whose nucleus is larger gets an exact full sort, on an accelerator every row
is sorted in full (cheap there, and deciding per row would need a host sync).

The only difference from transformers' warpers: a token tied in probability with the last token of
the nucleus (or the k-th of top-k) is kept, where transformers keeps whichever its sort put first.
"""

from __future__ import annotations

from typing import Any

# Stands in for -inf before the softmax: a row with every token masked (already finished) still
# yields a distribution instead of NaNs; whatever it draws is discarded as padding.
_MASKED = -1e9
# Top-p looks among this many most likely tokens first (CPU); see the module docstring.
_CANDIDATES = 256
_MASK32 = 0xFFFFFFFF
# Steps of uniforms made at once; more are made when a generation runs longer.
_STEP_BLOCK = 256


def _mul32(x: Any, constant: int) -> Any:
    """(x * constant) mod 2**32 for x in [0, 2**32), in int64 without overflow (16-bit halves)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Any) -> Any:
    """A 32-bit integer hash with full avalanche (C. Wellons' "lowbias32"), elementwise on int64 tensors."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_uniforms(seeds: Any, first_step: int, steps: int) -> Any:
    """Uniforms in [0, 1) of shape (rows, steps): entry (r, s) depends only on seeds[r] and first_step + s.

    `seeds` is an int64 tensor of shape (rows, 2): the low and high 32 bits of each row's seed. Pure
    integer arithmetic, so the numbers are bit-identical on every device and in every batch.
    """
    import torch

    counters = torch.arange(first_step, first_step + steps, device=seeds.device, dtype=torch.int64)
    low, high = seeds[:, :1], seeds[:, 1:]
    bits = _mix32(low ^ _mix32(high ^ _mix32((counters.unsqueeze(0) + 0x9E3779B9) & _MASK32)))
    # 24 bits: exactly representable in float32, the precision of the CDF they are compared with.
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def sorts_every_row(device: Any) -> bool:
    """Whether top-p sorts each row's whole vocabulary; CPU first tries the `_CANDIDATES` most likely."""
    return device.type != "cpu"


def seed_words(seeds: list[int | None]) -> list[list[int]]:
    """Each seed as [low 32 bits, high 32 bits]; an unseeded row (direct backend use) gets a random seed."""
    import torch

    words = []
    for seed in seeds:
        value = seed if seed is not None else int(torch.randint(0, 2**62, (1,)))
        value %= 2**64
        words.append([value & _MASK32, value >> 32])
    return words


class RowSampler:
    """A logits processor: sample each row from its own counter-based stream, then force that token."""

    def __init__(self, seeds: list[int | None], temperature: float, top_p: float, top_k: int = 0) -> None:
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self._words = seed_words(seeds)
        self._seeds: Any = None
        self._uniforms: Any = None
        self._step = 0

    def keep(self, indices: Any) -> None:
        """Follow the batch when finished rows leave it (see decode_loop.py): only `indices` remain."""
        rows = indices.tolist()
        self._words = [self._words[row] for row in rows]
        if self._seeds is not None:
            self._seeds = self._seeds[indices.to(self._seeds.device)]
        if self._uniforms is not None:
            self._uniforms = self._uniforms[indices.to(self._uniforms.device)]

    def _uniforms_for_step(self, device: Any) -> Any:
        import torch

        if self._seeds is None:
            self._seeds = torch.tensor(self._words, dtype=torch.int64, device=device)
        if self._uniforms is None or self._step >= self._uniforms.shape[1]:
            made = 0 if self._uniforms is None else self._uniforms.shape[1]
            block = counter_uniforms(self._seeds, made, _STEP_BLOCK)
            self._uniforms = block if self._uniforms is None else torch.cat([self._uniforms, block], dim=1)
        column = self._uniforms[:, self._step : self._step + 1]
        self._step += 1
        return column

    def _threshold(self, probs: Any) -> Any:
        """Per row, the smallest probability a token needs to stay (top-k, then top-p); shape (rows, 1)."""
        import torch

        vocab = probs.shape[-1]
        on_cpu = not sorts_every_row(probs.device)
        top_k = self.top_k if 0 < self.top_k < vocab else 0
        if not top_k and self.top_p >= 1.0:
            return None
        if top_k:
            ranked = probs.topk(self.top_k, dim=-1).values  # the nucleus lies within the top k
            target = self.top_p * ranked.sum(dim=-1, keepdim=True)  # top-p of the renormalised top k
        elif on_cpu:
            ranked = probs.topk(min(_CANDIDATES, vocab), dim=-1).values
            target = torch.full_like(ranked[:, :1], self.top_p)
        else:
            ranked = probs.sort(dim=-1, descending=True).values
            target = torch.full_like(ranked[:, :1], self.top_p)
        if self.top_p >= 1.0:
            return ranked[:, -1:]  # the k-th most likely token's probability
        before = ranked.cumsum(dim=-1) - ranked  # mass of the tokens more likely than each
        kept = (before < target).sum(dim=-1, keepdim=True)  # at least 1: `before` starts at 0
        threshold = ranked.gather(-1, kept - 1)
        if on_cpu and not top_k and ranked.shape[-1] < vocab:
            # Rows whose nucleus reaches past the candidates: exact, with a full sort of those rows only.
            # (On CPU this test costs nothing; it decides per row, so a row never depends on its batch.)
            spill = (before[:, -1:] + ranked[:, -1:] < target).squeeze(-1)
            if bool(spill.any()):
                full = probs[spill].sort(dim=-1, descending=True).values
                full_before = full.cumsum(dim=-1) - full
                full_kept = (full_before < self.top_p).sum(dim=-1, keepdim=True)
                threshold[spill] = full.gather(-1, full_kept - 1)
        return threshold

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        uniforms = self._uniforms_for_step(scores.device)
        probs = torch.softmax(scores.float().clamp(min=_MASKED) / self.temperature, dim=-1)
        threshold = self._threshold(probs)
        if threshold is not None:
            probs = probs.masked_fill(probs < threshold, 0.0)
        cdf = probs.cumsum(dim=-1)
        total = cdf[:, -1:].contiguous()
        # right=True never lands on a zero-probability token, even for a draw of exactly 0; a draw
        # that rounds up to the total is held to the last token with any probability.
        picked = torch.searchsorted(cdf, uniforms * total, right=True)
        picked = torch.minimum(picked, torch.searchsorted(cdf, total))
        return torch.full_like(scores, float("-inf")).scatter_(-1, picked, 0.0)
