"""`filters:` — data filters applied after synthesis."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from opencharacter.config.base import Config


class FiltersConfig(Config):
    near_duplicate_profiles: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="Drop characters whose MiniLM profile embedding has cosine ≥ this with an earlier kept one.",
    )
    near_duplicate_method: Literal["lsh", "exact"] = Field(
        "lsh",
        description="lsh: compare only profiles sharing `near_duplicate_candidates` of their words (MinHash LSH, "
        "needs the `filters` extra); exact: embed and compare every pair.",
    )
    near_duplicate_candidates: float = Field(
        0.7, gt=0, le=1, description="lsh: word-set Jaccard a pair needs before its cosine is computed."
    )
    template_leftovers: bool = Field(True, description="Drop answers with placeholders: {RESPONSE_2}, {{ x }}, {…}.")
    non_language: bool = Field(True, description="Drop letter soup: long unbroken runs, few word-like words.")
    copy_original: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Drop rewrites with at least this share of word 3-grams copied from the original answer "
        "(code excluded; None: off).",
    )
    break_character: bool = Field(True, description="Drop dialogues with 'As an AI…', refusals and the like.")
    copy_profile_span: int | None = Field(
        10, ge=3, description="Drop answers repeating this many consecutive words of the profile (None: off)."
    )
    min_answer_chars: int = Field(20, ge=0, description="Drop dialogues with an answer shorter than this.")
    max_answer_chars: int = Field(6000, ge=1, description="Drop dialogues with an answer longer than this.")
    drop_truncated: bool = Field(True, description="Drop empty answers and answers cut at max_tokens.")
