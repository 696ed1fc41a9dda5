"""The run directory's files, rewritten from the store after every command.

Rendering from the store (ordered by each record's sort key) is what makes a resumed run's files
byte-identical to an uninterrupted run's: the order never depends on which call finished first.
"""

from __future__ import annotations

from pathlib import Path

from opencharacter.export.card import write_card
from opencharacter.fileio import write_jsonl
from opencharacter.records import Character, Dialogue
from opencharacter.store import RunStore

CHARACTERS = "characters.jsonl"
DIALOGUES = "dialogues.jsonl"
FAILURES = "failures.jsonl"


def write_run_files(store: RunStore) -> dict[str, Path]:
    run = store.run_dir
    paths = {"characters": run / CHARACTERS, "dialogues": run / DIALOGUES, "failures": run / FAILURES}
    write_jsonl(paths["characters"], (c.model_dump_json() for c in store.records("profiles", Character)))
    write_jsonl(paths["dialogues"], (d.model_dump_json() for d in store.records("dialogues", Dialogue)))
    write_jsonl(paths["failures"], (f.model_dump_json() for f in store.failures()))
    paths["card"] = write_card(store)
    return paths
