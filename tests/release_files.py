"""Stand-in files in the format of the paper's release (xywang1/OpenCharacter), written by tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

PROFILE = (
    "Name: Amara Okafor\nAge: 34\nGender: Female\nRace: Nigerian\nBorn Place: Lagos, Nigeria\n"
    "Appearance: Tall, with close-cropped hair and ink-stained fingers.\n"
    "General Experience: Eleven years as a cartographer for the national survey,\n"
    "then a small map shop in Ibadan.\nPersonality: Meticulous, dry-humoured, impatient with vagueness."
)


def character_id(index: int) -> str:
    return str(uuid.UUID(int=index + 1))


def write_release(folder: Path, characters: int = 6, per_character: int = 3, question_key: str = "question") -> Path:
    """A release in miniature: character 2 has an empty profile, character 4 a markdown one."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "synthetic_character.jsonl").open("w", encoding="utf-8") as stream:
        for index in range(characters):
            text = PROFILE.replace("Amara Okafor", f"Person {index}").replace("34", str(30 + index))
            if index == 2:
                text = ""
            if index == 4:
                text = "**Name:** Person 4\n**Age:** mid-40s\n**Gender:** male\n- **Personality:** Loud."
            row = {
                "character_id": character_id(index),
                "persona": f"A cartographer, number {index}.",
                "character": text,
            }
            stream.write(json.dumps(row) + "\n")
    with (folder / "synthetic_dialogue.jsonl").open("w", encoding="utf-8") as stream:
        for question in range(per_character):
            for index in range(characters):
                row = {
                    "character_id": character_id(index),
                    "question_id": f"alpaca-{question}",
                    question_key: f"Question {question}: how do maps lie?",
                    "character_answer": f"As Person {index}, I would say maps lie by omission ({question}).",
                }
                stream.write(json.dumps(row) + "\n")
        stream.write(
            json.dumps({"character_id": "no-such-id", "question_id": "q", "question": "x", "character_answer": "y"})
            + "\n"
        )
    return folder
