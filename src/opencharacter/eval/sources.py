"""Who and what to evaluate: PersonaGym's static benchmark folder, persona files, or a run's characters."""

from __future__ import annotations

import json
from pathlib import Path

from opencharacter.errors import ConfigError, InputError
from opencharacter.eval.records import EvalPersona, Question
from opencharacter.eval.tasks import TASK_BY_KEY
from opencharacter.hashing import content_hash, normalize_text
from opencharacter.records import Character
from opencharacter.sources import load_personas


def persona_id(persona: str) -> str:
    return content_hash("persona", normalize_text(persona))


def question_id(persona: str, task: str, question: str) -> str:
    return content_hash("question", persona_id(persona), task, question)


def load_benchmark(folder: str | Path) -> tuple[list[EvalPersona], list[Question]]:
    """PersonaGym's static benchmark, unchanged: one `<persona text>.json` per persona, task → questions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(str(folder), None, "PersonaGym benchmark must be a folder of <persona>.json files")
    personas, questions = [], []
    for path in sorted(folder.glob("*.json")):
        persona = normalize_text(path.stem)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(str(path), exc.lineno, f"malformed JSON: {exc.msg}") from None
        except UnicodeDecodeError:
            raise InputError(str(path), None, "not valid UTF-8") from None
        if not isinstance(data, dict):
            raise InputError(str(path), 1, "expected an object of task name → list of questions")
        unknown = sorted(set(data) - set(TASK_BY_KEY))
        if unknown:
            raise InputError(str(path), None, f"unknown task keys {unknown}; expected {sorted(TASK_BY_KEY)}")
        entry = EvalPersona(persona_id=persona_id(persona), persona=persona)
        personas.append(entry)
        for key, items in data.items():
            if not isinstance(items, list) or not all(isinstance(q, str) and q.strip() for q in items):
                raise InputError(str(path), None, f"{key!r} must be a list of non-empty question strings")
            task = TASK_BY_KEY[key].name
            for text in items:
                questions.append(
                    Question(
                        question_id=question_id(persona, task, text),
                        persona_id=entry.persona_id,
                        task=task,
                        question=text.strip(),
                        source="benchmark",
                    )
                )
    if not personas:
        raise InputError(str(folder), None, "no <persona>.json files in the benchmark folder")
    return personas, questions


def load_persona_file(path: str | Path, limit: int | None = None) -> list[EvalPersona]:
    personas, _ = load_personas(path, limit=limit)
    return [EvalPersona(persona_id=persona_id(p.persona), persona=p.persona) for p in personas]


def load_run_characters(run: str | Path, held_out_of: str | Path | None = None) -> list[EvalPersona]:
    """A run's characters (with profiles); with `held_out_of`, only those a model never trained on."""
    path = Path(run) / "characters.jsonl"
    if not path.is_file():
        raise ConfigError(f"{run} has no characters.jsonl")
    characters = [Character.model_validate_json(line) for line in path.read_text("utf-8").splitlines() if line]
    if held_out_of is not None:
        split = Path(held_out_of) / "split.json"
        if not split.is_file():
            raise ConfigError(f"{held_out_of} has no split.json (made by `opencharacter train`)")
        trained = set(json.loads(split.read_text("utf-8"))["train_characters"])
        characters = [c for c in characters if c.character_id not in trained]
    return [EvalPersona(persona_id=persona_id(c.persona), persona=c.persona, character=c.character) for c in characters]
