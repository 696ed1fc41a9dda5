"""Rows copied between two run stores of one schema: seeding a shard from its run, merging it back.

Rows are copied verbatim (`SELECT *` over an attached database) between stores migrated to the same
schema version, so this works whatever encoding the store gives its columns, and nothing is parsed
that need not be. Each copy is one transaction: a refused or interrupted merge leaves the run store
as it was. The SQL on the store's tables lives here and in `run_store.py`, nowhere else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opencharacter.errors import ConfigError
from opencharacter.records import Failure

_BUSY_MS = 10000


@dataclass
class Copied:
    """Rows a merge added to the run store."""

    calls: int = 0
    records: int = 0
    failures: int = 0
    sessions: int = 0


@contextmanager
def _attached(target: Path, other: Path, alias: str) -> Iterator[sqlite3.Connection]:
    """`target` open with `other` attached as `alias`, both checked to be of one schema version."""
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        db.execute(f"ATTACH DATABASE ? AS {alias}", (str(other),))
        ours = db.execute("PRAGMA main.user_version").fetchone()[0]
        theirs = db.execute(f"PRAGMA {alias}.user_version").fetchone()[0]
        if ours != theirs:  # both were migrated on open; a mismatch means another package version
            raise ConfigError(f"{other}: store schema v{theirs}, {target} is v{ours}")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute(f"DETACH DATABASE {alias}")
    finally:
        db.close()


def seed(target: Path, source: Path, stages: Sequence[str], meta_keys: Sequence[str]) -> None:
    """Copy `source`'s records of `stages` and its `meta_keys` into `target` where it lacks them."""
    with _attached(target, source, "run") as db:
        marks = ",".join("?" * len(stages))
        db.execute(f"INSERT OR IGNORE INTO main.records SELECT * FROM run.records WHERE stage IN ({marks})", stages)
        keys = ",".join("?" * len(meta_keys))
        db.execute(f"INSERT OR IGNORE INTO main.meta SELECT * FROM run.meta WHERE key IN ({keys})", meta_keys)


def merge(target: Path, shard: Path, failures: Sequence[Failure]) -> Copied:
    """The calls and records of `shard` that `target` lacks, its failures (see `_copy_failures`) and
    its sessions, in one transaction. Idempotent: nothing already in `target` is copied twice."""
    copied = Copied()
    with _attached(target, shard, "shard") as db:
        copied.calls = db.execute("INSERT OR IGNORE INTO main.calls SELECT * FROM shard.calls").rowcount
        copied.records = db.execute("INSERT OR IGNORE INTO main.records SELECT * FROM shard.records").rowcount
        db.execute(
            "DELETE FROM main.failures WHERE EXISTS (SELECT 1 FROM main.records r"
            " WHERE r.stage = failures.stage AND r.id = failures.id)"
        )
        copied.failures = _copy_failures(db, failures)
        copied.sessions = db.execute(
            "INSERT INTO main.sessions SELECT * FROM shard.sessions s WHERE NOT EXISTS"
            " (SELECT 1 FROM main.sessions m WHERE m.command = s.command AND m.started = s.started"
            " AND m.wall_seconds = s.wall_seconds AND m.new_calls = s.new_calls"
            " AND m.cached_calls = s.cached_calls)"
        ).rowcount
    return copied


def _copy_failures(db: sqlite3.Connection, failures: Sequence[Failure]) -> int:
    """A shard's failure is copied only where the run has no record of that item, and replaces a
    recorded failure only if it got further (more attempts): merging an old shard never rewinds."""
    copied = 0
    for failure in failures:
        if db.execute(
            "SELECT 1 FROM main.records WHERE stage = ? AND id = ?", (failure.stage, failure.item_id)
        ).fetchone():
            continue
        row = db.execute(
            "SELECT data FROM main.failures WHERE stage = ? AND id = ?", (failure.stage, failure.item_id)
        ).fetchone()
        if row is not None and Failure.model_validate_json(row[0]).attempts >= failure.attempts:
            continue
        db.execute(
            "INSERT OR REPLACE INTO main.failures SELECT * FROM shard.failures WHERE stage = ? AND id = ?",
            (failure.stage, failure.item_id),
        )
        copied += 1
    return copied
