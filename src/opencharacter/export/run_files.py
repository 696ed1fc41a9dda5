"""The run directory's files, rewritten from the store after every command.

Rendering from the store (ordered by each record's sort key) is what makes a resumed run's files
byte-identical to an uninterrupted run's: the order never depends on which call finished first.

The files are streamed from the store a page at a time, each line the record's JSON exactly as
stored (no parse, no re-serialise), so memory stays flat at any size. A command that changed no
record or failure leaves the JSONL files alone: the store's change counter and each file's size
are remembered after a write, and a rerun of a finished 100k-dialogue run skips ~0.5 GB of writing.

With `synthesis.candidates` > 1, `dialogues.jsonl` holds each pair's kept candidate only, and two
more files appear: `candidates.jsonl` (every candidate's score) and `preferences.jsonl` (best vs
worst candidate per pair, for DPO). See `opencharacter.selection`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from opencharacter.export.card import write_card
from opencharacter.fileio import write_jsonl
from opencharacter.selection import CANDIDATE_SCORES, PREFERENCES, SELECTED, run_candidates
from opencharacter.store import RunStore
from opencharacter.store.layout import CANDIDATES, CHARACTERS, DIALOGUES, FAILURES, PREFERENCE_PAIRS

__all__ = ["CANDIDATES", "CHARACTERS", "DIALOGUES", "FAILURES", "PREFERENCE_PAIRS", "write_run_files"]
_WRITTEN = "run_files"


def write_run_files(store: RunStore) -> dict[str, Path]:
    run = store.run_dir
    paths = {"characters": run / CHARACTERS, "dialogues": run / DIALOGUES, "failures": run / FAILURES}
    sources: dict[str, Iterator[str]] = {
        "characters": store.record_lines("profiles"),
        "dialogues": store.record_lines("dialogues"),
        "failures": store.failure_lines(),
    }
    if run_candidates(store) > 1:
        paths |= {"candidates": run / CANDIDATES, "preferences": run / PREFERENCE_PAIRS}
        sources |= {
            "dialogues": store.record_lines(SELECTED),
            "candidates": store.record_lines(CANDIDATE_SCORES),
            "preferences": store.record_lines(PREFERENCES),
        }
    generation = store.generation()
    written = store.get_meta(_WRITTEN) or {}
    if not _up_to_date(written, generation, paths):
        for name, path in paths.items():
            write_jsonl(path, sources[name])
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        store.set_meta(_WRITTEN, {"generation": generation, "sizes": sizes})
    paths["card"] = write_card(store)
    return paths


def _up_to_date(written: dict, generation: int, paths: dict[str, Path]) -> bool:
    """Unchanged data, and every file still there at the size it was written (not deleted or edited)."""
    if written.get("generation") != generation:
        return False
    sizes = written.get("sizes", {})
    return all(path.exists() and path.stat().st_size == sizes.get(name) for name, path in paths.items())
