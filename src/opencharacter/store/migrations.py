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
    # v2: token usage as columns (cost accounting without parsing every call; new calls store their
    # text zlib-compressed, which json_extract cannot read), and a counter of record/failure changes
    # so that output files are rewritten only when the data under them changed.
    """
    ALTER TABLE calls ADD COLUMN finish_reason TEXT;
    ALTER TABLE calls ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
    UPDATE calls SET
        finish_reason = json_extract(completion, '$.finish_reason'),
        prompt_tokens = coalesce(json_extract(completion, '$.prompt_tokens'), 0),
        completion_tokens = coalesce(json_extract(completion, '$.completion_tokens'), 0);
    CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
    INSERT INTO generation VALUES (0, 0);
    CREATE TRIGGER records_insert AFTER INSERT ON records BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER records_delete AFTER DELETE ON records BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER records_update AFTER UPDATE ON records BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER failures_insert AFTER INSERT ON failures BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER failures_delete AFTER DELETE ON failures BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER failures_update AFTER UPDATE ON failures BEGIN UPDATE generation SET value = value + 1; END;
    """,
]


def migrate(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this opencharacter knows ({len(MIGRATIONS)}): upgrade it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with connection:
            connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
