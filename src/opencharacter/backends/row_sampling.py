"""Per-request sampling for batched local generation, so a seeded request gives the same text in any batch.

transformers samples a whole batch from one global RNG: a row's tokens depend on which requests
share its batch and on everything sampled before, and batch composition depends on timing. So the
same run twice gave different dialogues. Here each row draws from its own generator, seeded by its
request (the engine derives one seed per call), and the drawn token is the only one left for greedy
decoding to pick. Temperature and top-p are applied here, after every other processor
(repetition penalty, xgrammar's grammar mask), exactly where transformers' own sampling applies them.

Speed (bench/orchestration.py): one uniform number per row and inverse-CDF sampling, and top-p over
the `_CANDIDATES` most likely tokens rather than a sort of the whole vocabulary. A first version
with a full sort and a multinomial per row cost ~45 ms per step on 2 cores, a third of the throughput.
"""

from __future__ import annotations

from typing import Any

# Stands in for -inf before the softmax: a row with every token masked (already finished) still
# yields a distribution instead of NaNs; whatever it draws is discarded as padding.
_MASKED = -1e9
# Top-p looks among this many most likely tokens; a row whose nucleus is larger (a very flat
# distribution) makes that step sort the whole vocabulary instead, so the result is always exact.
_CANDIDATES = 256


class RowSampler:
    """A logits processor: sample each row with its own seeded generator, then force that token."""

    def __init__(self, seeds: list[int | None], temperature: float, top_p: float) -> None:
        self.seeds, self.temperature, self.top_p = seeds, temperature, top_p
        self._generators: list[Any] | None = None

    def _make_generators(self, device: Any) -> list[Any]:
        import torch

        generators = []
        for seed in self.seeds:
            generator = torch.Generator(device=device)
            # An unseeded request (direct backend use, without the engine) draws from the global RNG.
            generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
            generators.append(generator)
        return generators

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._generators is None:
            self._generators = self._make_generators(scores.device)
        uniforms = torch.cat([torch.rand(1, generator=g, device=scores.device) for g in self._generators])
        probs = full = torch.softmax(scores.float().clamp(min=_MASKED) / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs, tokens = full.topk(min(_CANDIDATES, full.shape[-1]), dim=-1)
            if bool((probs.sum(dim=-1) < self.top_p).any()):
                probs, tokens = full.sort(dim=-1, descending=True)
            # The nucleus: the most likely tokens until their mass reaches top_p (at least one).
            probs = probs * ((probs.cumsum(dim=-1) - probs) < self.top_p)
        cdf = probs.cumsum(dim=-1)
        # right=True never lands on a zero-probability token, even for a draw of exactly 0.
        picked = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
        picked = picked.clamp(max=cdf.shape[-1] - 1)
        chosen = tokens.gather(-1, picked) if self.top_p < 1.0 else picked
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(-1, chosen, 0.0)
