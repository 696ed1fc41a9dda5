"""Evaluation records: everything an evaluation writes is one of these, one JSON object per line."""

from __future__ import annotations

from pydantic import Field

from opencharacter.records import Record


class EvalPersona(Record):
    persona_id: str
    persona: str
    character: str = Field("", description="Profile text when known (runs, cards); empty for bare personas.")


class Question(Record):
    question_id: str
    persona_id: str
    task: str
    question: str
    source: str = Field(description="'benchmark' (PersonaGym static files) or 'generated'.")


class Answer(Record):
    question_id: str
    persona_id: str
    task: str
    question: str
    answer: str
    model: str
    system_prompt: str


class Verdict(Record):
    question_id: str
    persona_id: str
    task: str
    judge: str
    score: int | None = Field(description="1–5, or None when the verdict was excluded.")
    excluded_reason: str | None = None
    rationale: str = ""
    prompt: str = Field(
        "", description="Judge prompt and rubric versions (e.g. 'eval_judge@v1+rubrics@v1'); '' before 0.2."
    )


class FidelityResult(Record):
    question: str
    persona_id: str
    rank: int = Field(
        description="1-based rank of the answering character's own profile among all candidates (embedding)."
    )
    candidates: int
    lexical_rank: int | None = Field(
        None, description="The same rank by BM25 over the answer's words; None in evaluations made before 0.2."
    )
    # The profile-copy measures (`eval/copying.py`), against the answerer's own profile; None in
    # evaluations made before them (a rerun fills them in from the stored answers, asking nothing).
    copy_rate: float | None = Field(
        None, description="Share of the answer's content word trigrams found in its own character's profile."
    )
    opens_with_profile: bool | None = Field(
        None, description="The answer's first sentence names the character or is mostly copied from its profile."
    )
    masked_rank: int | None = Field(
        None, description="The embedding rank of the answer with its profile-copied spans removed."
    )
    masked_lexical_rank: int | None = Field(
        None, description="The BM25 rank of the answer with its profile-copied spans removed."
    )
