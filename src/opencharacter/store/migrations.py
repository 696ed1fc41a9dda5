"""Schema migrations, applied in order; `PRAGMA user_version` records how far a store has come.

Append a new entry to change the schema; never edit an old one (old run directories replay them).
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # v1: the call cache, stage records with a stable sort key, failures, metadata, command sessions.
    """
    CREATE TABLE calls (
        key TEXT PRIMARY KEY,
        prompt_id TEXT NOT NULL,
        model TEXT NOT NULL,
        completion TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE records (
        stage TEXT NOT NULL,
        id TEXT NOT NULL,
        sort_key TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (stage, id)
    );
    CREATE INDEX records_order ON records (stage, sort_key, id);
    CREATE TABLE failures (
        stage TEXT NOT NULL,
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (stage, id)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        command TEXT NOT NULL,
        started REAL NOT NULL,
        wall_seconds REAL NOT NULL,
        new_calls INTEGER NOT NULL,
        cached_calls INTEGER NOT NULL
    );
    """,
]


def migrate(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with connection:
            connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
