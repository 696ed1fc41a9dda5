"""One SQLite file per run directory: what makes a killed run resumable without duplicates.

WAL mode with synchronous=NORMAL: every committed row survives `kill -9` of the process (not a
power cut, which would need FULL at a large cost in throughput). Rows are committed one by one
as results arrive, so a crash loses at most the requests that were in flight.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from opencharacter.errors import ConfigError
from opencharacter.records import Completion, Failure
from opencharacter.store.migrations import migrate

Model = TypeVar("Model", bound=BaseModel)
STORE_FILE = "store.sqlite"


class RunStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir} exists and is not a directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / STORE_FILE
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a usable run store ({exc})") from None

    def close(self) -> None:
        self._db.close()

    # -- the call cache ---------------------------------------------------------------------------
    def get_call(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
        return Completion.model_validate_json(row[0]) if row else None

    def put_call(self, key: str, prompt_id: str, model: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)",
            (key, prompt_id, model, completion.model_dump_json(), time.time()),
        )

    def usage(self) -> dict[str, dict[str, int]]:
        """Token usage per model and prompt, over every call this run has made."""
        result: dict[str, dict[str, int]] = {}
        for prompt_id, model, calls, prompt, completion in self._db.execute(
            "SELECT prompt_id, model, COUNT(*), SUM(json_extract(completion, '$.prompt_tokens')),"
            " SUM(json_extract(completion, '$.completion_tokens')) FROM calls GROUP BY prompt_id, model"
        ):
            result[f"{prompt_id} · {model}"] = {
                "calls": calls,
                "prompt_tokens": prompt or 0,
                "completion_tokens": completion or 0,
            }
        return result

    # -- stage records ------------------------------------------------------------------------------
    def has_record(self, stage: str, record_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM records WHERE stage = ? AND id = ?", (stage, record_id))
        return found.fetchone() is not None

    def get_record(self, stage: str, record_id: str, model: type[Model]) -> Model | None:
        row = self._db.execute("SELECT data FROM records WHERE stage = ? AND id = ?", (stage, record_id)).fetchone()
        return model.model_validate_json(row[0]) if row else None

    def put_record(self, stage: str, record_id: str, sort_key: str, record: BaseModel) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
            (stage, record_id, sort_key, record.model_dump_json()),
        )
        self._db.execute("DELETE FROM failures WHERE stage = ? AND id = ?", (stage, record_id))

    def records(self, stage: str, model: type[Model]) -> Iterator[Model]:
        rows = self._db.execute("SELECT data FROM records WHERE stage = ? ORDER BY sort_key, id", (stage,))
        for (data,) in rows.fetchall():
            yield model.model_validate_json(data)

    def count(self, stage: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records WHERE stage = ?", (stage,)).fetchone()[0]

    # -- failures -----------------------------------------------------------------------------------
    def put_failure(self, failure: Failure) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
            (failure.stage, failure.item_id, failure.model_dump_json()),
        )

    def get_failure(self, stage: str, item_id: str) -> Failure | None:
        row = self._db.execute("SELECT data FROM failures WHERE stage = ? AND id = ?", (stage, item_id)).fetchone()
        return Failure.model_validate_json(row[0]) if row else None

    def failures(self, stage: str | None = None) -> list[Failure]:
        query, args = "SELECT data FROM failures ORDER BY stage, id", ()
        if stage is not None:
            query, args = "SELECT data FROM failures WHERE stage = ? ORDER BY id", (stage,)
        return [Failure.model_validate_json(data) for (data,) in self._db.execute(query, args).fetchall()]

    # -- metadata and sessions ----------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def add_session(self, command: str, started: float, wall: float, new_calls: int, cached_calls: int) -> None:
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (command, started, wall, new_calls, cached_calls)
        )

    def sessions(self) -> list[dict[str, Any]]:
        keys = ("command", "started", "wall_seconds", "new_calls", "cached_calls")
        return [
            dict(zip(keys, row, strict=True)) for row in self._db.execute("SELECT * FROM sessions ORDER BY started")
        ]
