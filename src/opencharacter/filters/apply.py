"""Run the configured filters over a run and write the survivors beside it (`RUN/filtered/`).

The store keeps everything; filtering only decides what goes into the training files, so a
different threshold never needs a regeneration.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from opencharacter.config import FiltersConfig
from opencharacter.export.run_files import CHARACTERS, DIALOGUES
from opencharacter.fileio import atomic_open, write_jsonl
from opencharacter.filters import rules
from opencharacter.records import Character, Dialogue
from opencharacter.store import RunStore


@dataclass
class FilterReport:
    characters_in: int = 0
    characters_out: int = 0
    dialogues_in: int = 0
    dialogues_out: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    """Reason category → dialogues (or characters) removed for it; the first failing rule counts."""

    def as_dict(self) -> dict[str, object]:
        return {
            "characters_in": self.characters_in,
            "characters_out": self.characters_out,
            "dialogues_in": self.dialogues_in,
            "dialogues_out": self.dialogues_out,
            "removed": dict(self.removed),
        }


def apply_filters(run: str | Path, config: FiltersConfig, out: str | Path | None = None) -> tuple[Path, FilterReport]:
    run = Path(run)
    target = Path(out) if out is not None else run / "filtered"
    store = RunStore(run)
    try:
        characters = list(store.records("profiles", Character))
        dialogues = list(store.records("dialogues", Dialogue))
    finally:
        store.close()
    report = FilterReport(characters_in=len(characters), dialogues_in=len(dialogues))
    dropped_characters: dict[str, str] = {}
    if config.near_duplicate_profiles is not None:
        dropped_characters = rules.near_duplicate_profiles(characters, config.near_duplicate_profiles)
        report.removed["near-duplicate profile (characters)"] += len(dropped_characters)
    kept_characters = [c for c in characters if c.character_id not in dropped_characters]
    by_id = {c.character_id: c for c in kept_characters}
    kept: list[Dialogue] = []
    for dialogue in dialogues:
        reason = _first_reason(dialogue, by_id, dropped_characters, config)
        if reason is None:
            kept.append(dialogue)
        else:
            report.removed[reason.split(":")[0]] += 1
    report.characters_out, report.dialogues_out = len(kept_characters), len(kept)
    write_jsonl(target / CHARACTERS, (c.model_dump_json() for c in kept_characters))
    write_jsonl(target / DIALOGUES, (d.model_dump_json() for d in kept))
    with atomic_open(target / "filter_report.json") as stream:
        stream.write(json.dumps({"config": config.model_dump(), **report.as_dict()}, indent=2))
    return target, report


def _first_reason(
    dialogue: Dialogue, characters: dict[str, Character], dropped: dict[str, str], config: FiltersConfig
) -> str | None:
    if dialogue.character_id in dropped:
        return "character removed as a near-duplicate profile"
    checks = []
    if config.drop_truncated:
        checks.append(rules.truncated_or_empty(dialogue))
    if config.break_character:
        checks.append(rules.breaks_character(dialogue))
    if config.copy_profile_span:
        checks.append(rules.copies_profile(dialogue, characters.get(dialogue.character_id), config.copy_profile_span))
    checks.append(rules.length_out_of_bounds(dialogue, config.min_answer_chars, config.max_answer_chars))
    return next((reason for reason in checks if reason), None)
