"""The durable run store (SQLite in WAL mode): call cache, stage records, failures, run metadata."""

from opencharacter.store.run_store import RunStore

__all__ = ["RunStore"]
