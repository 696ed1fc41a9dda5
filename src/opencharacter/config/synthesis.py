"""What is read (`personas:`, `instructions:`) and how profiles and dialogues are made (`profiles:`, `synthesis:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from opencharacter.config.base import Config
from opencharacter.records import Sampling, Strategy


class ProfilesConfig(Config):
    sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=400),
        description="Sampling for profiles.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per persona before it is recorded as failed.")
    prompt_version: int | None = Field(None, description="Profile prompt version (default: newest).")


class SelectionConfig(Config):
    """How the kept answer is chosen among `synthesis.candidates` (character-aware rejection sampling)."""

    distractors: int = Field(
        15, ge=1, le=1023, description="Other characters (sampled, seeded) each candidate's profile is ranked among."
    )
    drop_below_chance: bool = Field(
        False, description="Drop pairs whose best candidate ranks its own character no better than chance."
    )
    copy_penalty: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Subtracted from a candidate's score (the reciprocal rank of its own character) times its "
        "profile-copy rate (share of its word trigrams found in its own profile): restating the profile is "
        "not role-play. At 1.0 a candidate copying over half its trigrams loses to a clean one ranked second; "
        "a passing mention of a profile fact (copy rate ~0.1) does not. 0: rank alone, as before.",
    )


class SynthesisConfig(Config):
    per_instruction: int = Field(3, ge=1, description="Distinct characters paired with each instruction (paper: 3).")
    seed: int = Field(0, description="Seed of the instruction-character pairing.")
    sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.7, max_tokens=512),
        description="Sampling for answers; max_tokens is per answer.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per dialogue before it is recorded as failed.")
    generate_prompt_version: int | None = Field(None, description="Generate prompt version (default: newest).")
    rewrite_prompt_version: int | None = Field(None, description="Rewrite prompt version (default: newest).")
    system_prompt_version: int | None = Field(
        None, description="Training system-prompt version (default: newest); train and eval reuse it."
    )
    candidates: int = Field(
        1,
        ge=1,
        le=32,
        description="Answers made per (instruction, character); the one whose answer best identifies its own "
        "character is kept, all are scored in candidates.jsonl (1: no selection).",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Used when candidates > 1.")


class PersonaSource(Config):
    path: str = Field(description="File (jsonl/json/txt), saved datasets directory, or hub dataset id.")
    format: Literal["auto", "persona", "personahub", "text", "dataset", "cards"] = "auto"
    column: str | None = Field(None, description="Column holding the persona text.")
    limit: int | None = Field(None, ge=1, description="Read at most this many personas.")


class InstructionSource(Config):
    path: str = Field(description="Instruction file: Alpaca, LIMA, Persona Hub, ShareGPT or messages.")
    format: Literal["auto", "alpaca", "lima", "personahub", "sharegpt", "messages"] = "auto"
    strategies: list[Strategy] = Field(default_factory=lambda: ["generate"], description="rewrite and/or generate.")
    limit: int | None = Field(None, ge=1, description="Read at most this many instructions.")
    name: str | None = Field(None, description="Label in the `source` field (default: the file stem).")
