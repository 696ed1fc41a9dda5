"""Per-request sampling for batched local generation, so a seeded request gives the same text in any batch.

transformers samples a whole batch from one global RNG: a row's tokens depend on which requests
share its batch and on everything sampled before, and batch composition depends on timing. So the
same run twice gave different dialogues. Here each row draws from its own generator, seeded by its
request (the engine derives one seed per call), and the drawn token is the only one left for greedy
decoding to pick. Temperature and top-p are applied here, after every other processor
(repetition penalty, xgrammar's grammar mask), exactly where transformers' own sampling applies them.
"""

from __future__ import annotations

from typing import Any

# Stands in for -inf before the softmax: a row with every token masked (already finished) still
# yields a distribution instead of NaNs; whatever it draws is discarded as padding.
_MASKED = -1e9


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
        probs = torch.softmax(scores.float().clamp(min=_MASKED) / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ranked, order = probs.sort(dim=-1, descending=True)
            # Keep the most likely tokens until their mass reaches top_p (always at least one).
            ranked[(ranked.cumsum(dim=-1) - ranked) > self.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, order, ranked)
        chosen = torch.cat(
            [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self._generators, strict=True)]
        )
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(-1, chosen.unsqueeze(-1).to(scores.device), 0.0)
