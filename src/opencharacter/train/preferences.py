"""DPO data: `PreferencePair` records from a run's preferences.jsonl (or any file of them), turned
into TRL's conversational preference format.

A pair is two candidate answers to the same prompt — the character's system prompt and the user
turn(s) — where selection found `chosen` the more recognisably in character and `rejected` the less.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from opencharacter.errors import ConfigError, InputError
from opencharacter.records import PreferencePair
from opencharacter.sources.reader import InvalidHandler, LoadReport, read_json_items

PREFERENCES_FILE = "preferences.jsonl"
HOW_TO_MAKE = (
    "make it with `opencharacter synthesize` and `synthesis.candidates` > 1 "
    "(each pair is the best vs the worst candidate answer)"
)


@dataclass(frozen=True)
class PairExample:
    pair: PreferencePair

    @property
    def character(self) -> str:
        """Group key for the held-out-characters split, as for SFT dialogues."""
        return self.pair.character_id

    def as_trl_row(self) -> dict[str, Any]:
        """TRL's conversational format: the prompt's messages, then one assistant message each."""
        return {
            "prompt": [m.model_dump() for m in self.pair.prompt],
            "chosen": [{"role": "assistant", "content": self.pair.chosen}],
            "rejected": [{"role": "assistant", "content": self.pair.rejected}],
        }


@dataclass
class PreferenceData:
    examples: list[PairExample]
    source: str
    system_prompt_version: str | None


def preferences_path(source: str | Path) -> Path:
    """A run directory's preferences.jsonl, or the file given; missing → one line saying how to make it."""
    path = Path(source)
    if path.is_dir():
        path = path / PREFERENCES_FILE
        if not path.is_file():
            raise ConfigError(f"{source}: no {PREFERENCES_FILE} there; {HOW_TO_MAKE}")
    elif not path.is_file():
        raise ConfigError(f"{source}: no such preferences file; {HOW_TO_MAKE}")
    return path


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"not a preference pair: {where}: {first['msg']}{more}"


def _check(pair: PreferencePair, where: str, line: int) -> None:
    if not pair.prompt or pair.prompt[0].role != "system":
        raise InputError(where, line, "prompt must start with the character's system message")
    if pair.prompt[-1].role != "user":
        raise InputError(where, line, "prompt must end with a user message (chosen/rejected answer it)")
    if not pair.chosen.strip() or not pair.rejected.strip():
        raise InputError(where, line, "chosen and rejected answers must not be empty")


def load_preferences(source: str | Path, strategies: list[str] | None = None) -> PreferenceData:
    path = preferences_path(source)
    handler = InvalidHandler(LoadReport(str(path)), skip_invalid=False)
    examples = []
    for line, row in read_json_items(path, handler):
        if not isinstance(row, dict):
            raise InputError(str(path), line, "expected a JSON object")
        try:
            pair = PreferencePair.model_validate(row)
        except ValidationError as error:
            raise InputError(str(path), line, _problem(error)) from None
        _check(pair, str(path), line)
        if not strategies or pair.strategy in strategies:
            examples.append(PairExample(pair))
    if not examples:
        raise ConfigError(f"{path}: no preference pairs" + (f" for strategies {strategies}" if strategies else ""))
    return PreferenceData(examples, str(path), _system_prompt_version(path.parent / "dialogues.jsonl"))


def _system_prompt_version(dialogues: Path) -> str | None:
    """The system-prompt template the pairs' prompts were rendered with: the run's dialogues record it
    (pairs are made from them), so chat and evaluation render the same one."""
    if not dialogues.is_file():
        return None
    versions = set()
    with dialogues.open(encoding="utf-8") as stream:
        for text in stream:
            if text.strip():
                version = json.loads(text).get("system_prompt_version")
                if version:
                    versions.add(version)
    return versions.pop() if len(versions) == 1 else None
