"""Training data: a run's dialogues, a `messages` JSONL/Parquet file, or a `datasets` dataset.

Validation holds out whole *characters*, not rows: the paper's claim is generalisation to unseen
characters, and a row split would leak each character's voice into validation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from opencharacter.errors import ConfigError, InputError
from opencharacter.hashing import content_hash
from opencharacter.models.paths import check_data_spec
from opencharacter.sources.reader import InvalidHandler, LoadReport, read_json_items


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]
    character: str
    """Group key for the split: the run's character_id, else a hash of the system prompt."""


@dataclass
class TrainingData:
    examples: list[Example]
    source: str
    system_prompt_version: str | None


def _example(row: dict[str, Any], where: str, line: int | None) -> Example:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(where, line, "expected a non-empty 'messages' list")
    clean = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise InputError(where, line, "each message needs a role of system, user or assistant")
        clean.append({"role": message["role"], "content": str(message.get("content", ""))})
    if not any(m["role"] == "assistant" for m in clean):
        raise InputError(where, line, "no assistant message to learn from")
    system = next((m["content"] for m in clean if m["role"] == "system"), "")
    character = row.get("character_id") or content_hash("system", system)
    return Example(clean, str(character))


def load_training_data(
    source: str | Path, strategies: list[str] | None = None, sources: list[str] | None = None
) -> TrainingData:
    """Dialogues to train on; `strategies` / `sources` keep those of some strategies or instruction
    sources (a run's `source` field: lima, alpaca, ...) only."""
    path = Path(source)
    if path.is_dir() and (path / "dialogues.jsonl").is_file():
        return _from_jsonl(path / "dialogues.jsonl", strategies, sources)
    if path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return _from_rows(rows, str(path), strategies, sources=sources)
    if path.is_file():
        return _from_jsonl(path, strategies, sources)
    if not path.exists():
        check_data_spec(str(source))  # a missing path fails here, before `datasets` tries the hub
    import datasets

    # A saved directory, or a hub id the user named.
    loaded = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(str(source), split="train")
    table = loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    return _from_rows(list(table), str(source), strategies, sources=sources)


def _from_jsonl(path: Path, strategies: list[str] | None, sources: list[str] | None = None) -> TrainingData:
    handler = InvalidHandler(LoadReport(str(path)), skip_invalid=False)
    rows = []
    for line, row in read_json_items(path, handler):
        if not isinstance(row, dict):
            raise InputError(str(path), line, "expected a JSON object")
        rows.append((line, row))
    return _from_rows([r for _, r in rows], str(path), strategies, [line for line, _ in rows], sources)


def _from_rows(
    rows: list[dict[str, Any]],
    where: str,
    strategies: list[str] | None,
    lines: list[int] | None = None,
    sources: list[str] | None = None,
) -> TrainingData:
    examples, versions, seen = [], set(), set()
    for index, row in enumerate(rows):
        if strategies and row.get("strategy") not in strategies:
            continue
        if sources:
            if "source" not in row:
                raise InputError(where, lines[index] if lines else index + 1, "no 'source' field to filter sources on")
            seen.add(row["source"])
            if row["source"] not in sources:
                continue
        examples.append(_example(row, where, lines[index] if lines else index + 1))
        if row.get("system_prompt_version"):
            versions.add(row["system_prompt_version"])
    if not examples:
        wanted = (f" for strategies {strategies}" if strategies else "") + (
            f" from sources {sources} (it has {sorted(seen)})" if sources else ""
        )
        raise ConfigError(f"{where}: no training dialogues{wanted}")
    if len(versions) > 1:
        raise ConfigError(f"{where}: dialogues mix system-prompt versions {sorted(versions)}; train on one")
    return TrainingData(examples, where, versions.pop() if versions else None)


class HasCharacter(Protocol):
    @property
    def character(self) -> str: ...


Item = TypeVar("Item", bound=HasCharacter)


def split_by_character(examples: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Dialogues (SFT) or preference pairs (DPO) of held-out characters go to validation."""
    characters = sorted({e.character for e in examples})
    held = 0 if fraction <= 0 or len(characters) < 2 else max(1, round(fraction * len(characters)))
    random.Random(content_hash("split", seed)).shuffle(characters)
    validation = set(characters[:held])
    return [e for e in examples if e.character not in validation], [e for e in examples if e.character in validation]


def dump_split(path: Path, train: list[HasCharacter], validation: list[HasCharacter]) -> None:
    """Which characters trained and which were held out: evaluation needs the held-out ones."""
    path.write_text(
        json.dumps(
            {
                "train_characters": sorted({e.character for e in train}),
                "validation_characters": sorted({e.character for e in validation}),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
