"""Lexical fidelity: BM25 retrieval of the answering character's profile from the answer's words.

Candidate selection (`synthesis.candidates`) keeps the answer the embedding model finds most
characteristic, so a student trained on selected data can learn to please MiniLM without playing
the character better. This signal shares nothing with that model — no learned vectors, only which
profile words the answer uses, weighted by how rare they are among the profiles — so a gain on both
is a gain in what the answers say.

BM25 (Lucene variant, k1=1.5, b=0.75) from `bm25s`: numpy-only and small; chosen over rank-bm25
(10× slower at scale, unreleased since 2022) and scikit-learn's TF-IDF (50 MB, 2–3 s of import) by
measurement (see docs/evaluation.md). English stopwords removed, no stemming: "engine" and
"engines" are different words here, the same for every model compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opencharacter.errors import MissingDependencyError
from opencharacter.eval.fidelity import NO_CONTENT


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as error:
        raise MissingDependencyError("bm25s", "eval") from error
    return bm25s


class LexicalScorer:
    """BM25 score of every profile (the documents) for every answer (the queries)."""

    def similarity(self, profiles: list[str], answers: list[str]) -> Any:
        bm25s = _bm25s()

        def words(texts: list[str]) -> list[list[str]]:
            return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)

        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(profiles, stopwords="en", show_progress=False), show_progress=False)
        matrix = np.zeros((len(answers), len(profiles)))
        # An answer that was only a name has no words to retrieve with: all zeros, i.e. chance.
        for row, tokens in enumerate(words([t if t != NO_CONTENT else "" for t in answers])):
            if tokens:
                matrix[row] = retriever.get_scores(tokens)
        return matrix
