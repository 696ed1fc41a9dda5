"""The run directory's layout: every file and folder name a command reads or writes, in one place.

```
RUN/
  store.sqlite            the durable store (calls, records, failures, metadata); everything else is
                          rewritten from it
  run.lock                one command at a time (store/lock.py)
  characters.jsonl  dialogues.jsonl  failures.jsonl     the run files, rewritten by every command
  candidates.jsonl  preferences.jsonl                   with synthesis.candidates > 1
  README.md               the dataset card
  shards/<i>-of-<N>/      shard stores (`--shard i/N`, the Ray executor), merged into store.sqlite
  batch/                  Batch API files (`opencharacter batch export`) and their key index
  exports/                `opencharacter export` (ShareGPT, Alpaca, messages, Parquet, cards)
  filtered/               `opencharacter filter`: the survivors and filter_report.json
```

`existing_run` is the one check that a path is a run directory, with the one message that says
how to make one.
"""

from __future__ import annotations

from pathlib import Path

from opencharacter.errors import ConfigError

STORE = "store.sqlite"
LOCK = "run.lock"
CHARACTERS = "characters.jsonl"
DIALOGUES = "dialogues.jsonl"
FAILURES = "failures.jsonl"
CANDIDATES = "candidates.jsonl"
PREFERENCE_PAIRS = "preferences.jsonl"
CARD = "README.md"
SHARDS = "shards"
BATCH = "batch"
EXPORTS = "exports"
CARDS = "cards"
"""Inside `exports/`: character cards (JSON and PNG)."""
FILTERED = "filtered"
FILTER_REPORT = "filter_report.json"


class NotARun(ConfigError):
    """A command that needs an existing run was given a path without a store (exit 2)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return (
            f"{self.path} is not a run directory (no {STORE}): "
            f"make one with `opencharacter profiles --out {self.path}` (or `opencharacter run`)"
        )


def is_run(path: str | Path) -> bool:
    return (Path(path) / STORE).is_file()


def existing_run(path: str | Path) -> Path:
    """`path` as a Path when it is a run directory; else `NotARun`, the one message for it."""
    path = Path(path)
    if not is_run(path):
        raise NotARun(str(path))
    return path
