"""One SQLite file per run directory: what makes a killed run resumable without duplicates.

WAL mode with synchronous=NORMAL: every committed row survives `kill -9` of the process (not a
power cut, which would need FULL at a large cost in throughput).

Results are committed in small batches, not one transaction per row: a commit is due once
`COMMIT_ROWS` writes are pending or `COMMIT_SECONDS` after the oldest pending one (a task on the
running event loop sees to it when no further write comes). A call and the record made from it
land in one transaction or in consecutive ones, so a crash loses at most the results of the last
fraction of a second, which a rerun recomputes; it never duplicates one (records are keyed by id).
Everything else (metadata, sessions, `close`), and any write made outside an event loop, commits at
once. While a batch is open this process holds SQLite's write lock: open one RunStore per run
directory per process (another process waits at most a batch's age for it).

Call payloads are stored zlib-compressed (level 1: ~25 µs per call) with their token counts in
columns; records stay JSON text, byte for byte the line the output files hold, so files are
written from the store without parsing a record.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from opencharacter.errors import ConfigError
from opencharacter.records import Completion, Failure
from opencharacter.store.layout import STORE
from opencharacter.store.migrations import migrate

Model = TypeVar("Model", bound=BaseModel)
STORE_FILE = STORE
COMMIT_ROWS = 500
COMMIT_SECONDS = 0.05
PAGE_ROWS = 1000
_IN_LIMIT = 500  # ids per `IN (…)` query: far below SQLite's 32766 host parameters
# Larger pages for new stores: a dialogue (~4 KB) overflows a 4 KB page into a half-empty second
# one; 16 KB pages hold three or four. Existing stores keep the page size they were made with.
NEW_STORE_PAGE_SIZE = 16384


class RunStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir} exists and is not a directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / STORE_FILE
        self._pending = 0
        self._first_pending = 0.0
        self._timer: asyncio.Task[None] | None = None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
                self._db.execute(f"PRAGMA page_size={NEW_STORE_PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a usable run store ({exc})") from None

    def close(self) -> None:
        if self._db is None:
            return
        self.flush()
        self._db.close()
        self._db = None

    def __del__(self) -> None:
        # A store dropped without close() still keeps what it was given.
        try:
            if getattr(self, "_db", None) is not None:
                self.close()
        except sqlite3.Error:
            pass

    # -- batched writes -----------------------------------------------------------------------------
    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """A hot-path write: inside an event loop it joins the open batch, which commits when full or
        old enough; a synchronous caller (no loop) commits at once and never leaves the lock held."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if not self._pending:
            self._db.execute("BEGIN")
            self._first_pending = time.monotonic()
            if loop is not None and (self._timer is None or self._timer.done()):
                # A task, not a bare timer: when the loop ends first (asyncio.run cancels what is
                # left), the cancellation still runs the task's `finally`, which commits.
                self._timer = loop.create_task(self._commit_soon())
        self._db.execute(sql, args)
        self._pending += 1
        if loop is None or self._pending >= COMMIT_ROWS or time.monotonic() - self._first_pending >= COMMIT_SECONDS:
            self.flush()

    async def _commit_soon(self) -> None:
        try:
            await asyncio.sleep(COMMIT_SECONDS)
        finally:
            self._timer = None
            if self._db is not None:
                self.flush()

    def flush(self) -> None:
        """Commit what is pending now."""
        if self._pending:
            self._pending = 0
            self._db.execute("COMMIT")

    def _write_now(self, sql: str, args: tuple[Any, ...]) -> None:
        self._write(sql, args)
        self.flush()

    # -- the call cache ---------------------------------------------------------------------------
    def get_call(self, key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT completion, finish_reason, prompt_tokens, completion_tokens FROM calls WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        payload, finish_reason, prompt_tokens, completion_tokens = row
        if isinstance(payload, str):  # written before schema v2: the whole Completion as JSON
            return Completion.model_validate_json(payload)
        return Completion(
            text=zlib.decompress(payload).decode("utf-8"),
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def put_call(self, key: str, prompt_id: str, model: str, completion: Completion) -> None:
        self._write(
            "INSERT OR REPLACE INTO calls (key, prompt_id, model, completion, created, finish_reason,"
            " prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                prompt_id,
                model,
                zlib.compress(completion.text.encode("utf-8"), 1),
                time.time(),
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
            ),
        )

    def usage(self) -> dict[str, dict[str, int]]:
        """Token usage per model and prompt, over every call this run has made."""
        return {
            f"{prompt_id} · {model}": {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}
            for prompt_id, model, calls, prompt, completion in self.usage_rows()
        }

    def usage_rows(self) -> list[tuple[str, str, int, int, int]]:
        """(prompt id, model, calls, prompt tokens, completion tokens), one row per prompt and model."""
        return self._db.execute(
            "SELECT prompt_id, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM calls"
            " GROUP BY prompt_id, model ORDER BY prompt_id, model"
        ).fetchall()

    # -- stage records ------------------------------------------------------------------------------
    def has_record(self, stage: str, record_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM records WHERE stage = ? AND id = ?", (stage, record_id))
        return found.fetchone() is not None

    def _rows_among(self, table: str, columns: str, stage: str, ids: Sequence[str]) -> Iterator[tuple]:
        """`SELECT columns FROM table` for `stage`'s rows among `ids`: one query per 500 ids."""
        for start in range(0, len(ids), _IN_LIMIT):
            chunk = ids[start : start + _IN_LIMIT]
            marks = ",".join("?" * len(chunk))
            yield from self._db.execute(
                f"SELECT {columns} FROM {table} WHERE stage = ? AND id IN ({marks})", (stage, *chunk)
            ).fetchall()

    def records_among(self, stage: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` have a record of `stage`: one query for a chunk of ids (resume's hot path)."""
        return {row[0] for row in self._rows_among("records", "id", stage, ids)}

    def failures_among(self, stage: str, ids: Sequence[str]) -> dict[str, Failure]:
        """The recorded failures of `stage` among `ids`, by id."""
        rows = self._rows_among("failures", "id, data", stage, ids)
        return {item_id: Failure.model_validate_json(data) for item_id, data in rows}

    def record_data_among(self, stage: str, ids: Sequence[str]) -> dict[str, str]:
        """id → the stored JSON of `stage`'s records among `ids` (one query for a chunk of ids)."""
        return dict(self._rows_among("records", "id, data", stage, ids))

    def record_ids(self, stage: str) -> list[str]:
        """Every record id of `stage`, sorted (the pairing's character pool: 20k ids, not 20k records)."""
        return [row[0] for row in self._db.execute("SELECT id FROM records WHERE stage = ? ORDER BY id", (stage,))]

    def get_record(self, stage: str, record_id: str, model: type[Model]) -> Model | None:
        row = self._db.execute("SELECT data FROM records WHERE stage = ? AND id = ?", (stage, record_id)).fetchone()
        return model.model_validate_json(row[0]) if row else None

    def put_record(self, stage: str, record_id: str, sort_key: str, record: BaseModel) -> None:
        self._write(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
            (stage, record_id, sort_key, record.model_dump_json()),
        )
        self._write("DELETE FROM failures WHERE stage = ? AND id = ?", (stage, record_id))

    def delete_record(self, stage: str, record_id: str) -> None:
        """For derived stages that are recomputed (a selection that no longer keeps a pair)."""
        self._write("DELETE FROM records WHERE stage = ? AND id = ?", (stage, record_id))

    def record_lines(self, stage: str) -> Iterator[str]:
        """Each record's JSON as stored (its `model_dump_json()`), in sort-key order, a page at a time.

        Keyset paging: every page is a fresh query, so no cursor stays open across the caller's
        own writes, and memory holds one page, never the stage.
        """
        for _, _, data in self.record_rows(stage):
            yield data

    def record_rows(self, stage: str) -> Iterator[tuple[str, str, str]]:
        """(sort key, id, JSON) of each record, as `record_lines` pages them."""
        rows = self._db.execute(
            "SELECT sort_key, id, data FROM records WHERE stage = ? ORDER BY sort_key, id LIMIT ?", (stage, PAGE_ROWS)
        ).fetchall()
        while rows:
            yield from rows
            if len(rows) < PAGE_ROWS:
                return
            last_sort, last_id = rows[-1][0], rows[-1][1]
            rows = self._db.execute(
                "SELECT sort_key, id, data FROM records WHERE stage = ? AND (sort_key, id) > (?, ?)"
                " ORDER BY sort_key, id LIMIT ?",
                (stage, last_sort, last_id, PAGE_ROWS),
            ).fetchall()

    def records(self, stage: str, model: type[Model]) -> Iterator[Model]:
        for data in self.record_lines(stage):
            yield model.model_validate_json(data)

    def count(self, stage: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records WHERE stage = ?", (stage,)).fetchone()[0]

    def facets(self, stage: str, fields: tuple[str, ...]) -> dict[str, dict[str, int]]:
        """How many records of `stage` have each value of each top-level JSON field, counted by SQLite
        (no record is parsed in Python); remembered until the data changes."""
        generation = self.generation()
        cache_key = f"facets:{stage}:{','.join(fields)}"
        cached = self.get_meta(cache_key)
        if cached is not None and cached["generation"] == generation:
            return cached["counts"]
        # One json_extract with every path parses each record once and returns the values as a JSON array.
        counts: dict[str, dict[str, int]] = {field: {} for field in fields}
        paths = ", ".join("?" for _ in fields)
        rows = self._db.execute(
            f"SELECT json_extract(data, {paths}), COUNT(*) FROM records WHERE stage = ? GROUP BY 1",
            (*(f"$.{field}" for field in fields), stage),
        )
        for values, n in rows:
            decoded = json.loads(values) if len(fields) > 1 else [values]
            for field, value in zip(fields, decoded, strict=True):
                if value is not None:
                    counts[field][str(value)] = counts[field].get(str(value), 0) + n
        self.set_meta(cache_key, {"generation": generation, "counts": counts})
        return counts

    def distinct_values(self, stage: str, field: str, where: dict[str, str] | None = None) -> set[str]:
        """The distinct values of a top-level JSON field over `stage`'s records whose `where` fields equal
        the given values, found by SQLite (no record is parsed in Python)."""
        conditions, args = "", [f"$.{field}", stage]
        for key, value in (where or {}).items():
            conditions += " AND json_extract(data, ?) = ?"
            args += [f"$.{key}", value]
        rows = self._db.execute(f"SELECT DISTINCT json_extract(data, ?) FROM records WHERE stage = ?{conditions}", args)
        return {row[0] for row in rows if row[0] is not None}

    def generation(self) -> int:
        """Bumped by every insert, replace or delete of a record or failure (triggers, schema v2)."""
        return self._db.execute("SELECT value FROM generation").fetchone()[0]

    # -- failures -----------------------------------------------------------------------------------
    def put_failure(self, failure: Failure) -> None:
        self._write(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
            (failure.stage, failure.item_id, failure.model_dump_json()),
        )

    def get_failure(self, stage: str, item_id: str) -> Failure | None:
        row = self._db.execute("SELECT data FROM failures WHERE stage = ? AND id = ?", (stage, item_id)).fetchone()
        return Failure.model_validate_json(row[0]) if row else None

    def failure_lines(self, stage: str | None = None) -> Iterator[str]:
        """Each failure's JSON as stored, ordered by stage and id, a page at a time."""
        where, args = ("stage = ?", (stage,)) if stage is not None else ("1", ())
        last: tuple[str, str] = ("", "")
        while True:
            rows = self._db.execute(
                f"SELECT stage, id, data FROM failures WHERE {where} AND (stage, id) > (?, ?)"
                " ORDER BY stage, id LIMIT ?",
                (*args, *last, PAGE_ROWS),
            ).fetchall()
            for _, _, data in rows:
                yield data
            if len(rows) < PAGE_ROWS:
                return
            last = (rows[-1][0], rows[-1][1])

    def failures(self, stage: str | None = None) -> list[Failure]:
        return [Failure.model_validate_json(data) for data in self.failure_lines(stage)]

    def failure_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT stage, COUNT(*) FROM failures GROUP BY stage ORDER BY stage"))

    # -- metadata and sessions ----------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._write_now("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def add_session(self, command: str, started: float, wall: float, new_calls: int, cached_calls: int) -> None:
        self._write_now(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (command, started, wall, new_calls, cached_calls)
        )

    def sessions(self) -> list[dict[str, Any]]:
        keys = ("command", "started", "wall_seconds", "new_calls", "cached_calls")
        return [
            dict(zip(keys, row, strict=True)) for row in self._db.execute("SELECT * FROM sessions ORDER BY started")
        ]
