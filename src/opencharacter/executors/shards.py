"""Shard stores: how several processes or machines make one run without sharing a SQLite writer.

A run's items are split by a stable hash of their id (`shard_of`). Shard `i` of `n` writes an
ordinary run store at `RUN/shards/<i>-of-<n>/store.sqlite`, so a killed shard resumes exactly as a
killed local run does. `merge_shards` copies every shard store into `RUN/store.sqlite`, from which
the run files are written as a local run writes them. Merging is idempotent (a record, call or
session already in the run store is not copied twice), so it can run after every shard, after all
of them, or again and again while shards are still working.

A shard made by another teacher or under other settings is refused rather than merged: a run
directory never silently mixes data made differently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError, OpenCharacterError
from opencharacter.store import RunStore, transfer
from opencharacter.store.identity import (
    DECISIONS,
    NOT_MERGED,
    PAIRING,
    SETTINGS,
    TEACHER,
    RunIdentity,
    agree_pairing,
    agree_settings,
    agree_teacher,
)
from opencharacter.store.layout import SHARDS, STORE

SHARDS_DIR = SHARDS
_SHARD_DIR = re.compile(r"^(\d+)-of-(\d+)$")
# Metadata keys: "teacher", "settings", "pairing" and "commands" are the run session's; "shard" and "finished" ours.
SHARD, FINISHED, COMMANDS = "shard", "finished", "commands"
RUN_DECISIONS = DECISIONS
"""Metadata a shard and its run must agree on: copied into a shard before it runs, checked and
adopted at merge. Nothing else is copied (other metadata, such as caches, belongs to one store)."""


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index` (0-based) of `count`: `--shard 0/4` is the first of four."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= i < N, e.g. --shard 0/4 … --shard 3/4")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, item_id: str) -> bool:
        return shard_of(item_id, self.count) == self.index


def shard_of(item_id: str, count: int) -> int:
    """The shard an item belongs to: the same on every machine, Python version and run.

    SHA-256 rather than `hash()` (randomised per process); item ids are content hashes already,
    but hashing again keeps the split even for any id a plug-in stage might use.
    """
    if count < 1:
        raise ConfigError(f"shard count must be at least 1, got {count}")
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_dir(run_dir: str | Path, spec: ShardSpec) -> Path:
    return Path(run_dir) / SHARDS_DIR / spec.name


def claim_settings(store: RunStore, settings: Mapping[str, Any], where: str | None = None) -> None:
    """Record `settings` ({key: the settings that shaped those records}, the run session's `settings`
    metadata) in a shard store, or refuse if it holds others for the same key.

    The coordinator copies the run store's settings into each shard before sending it work, so a
    shard directory left from a run under other settings fails at once, not at merge time.
    """
    RunIdentity(store, where).claim(settings)


def open_shard(run_dir: str | Path, spec: ShardSpec) -> RunStore:
    """The shard's store, marked as shard `spec` and as not finished until `mark_finished`."""
    store = RunStore(shard_dir(run_dir, spec))
    store.set_meta(SHARD, {"index": spec.index, "count": spec.count})
    store.set_meta(FINISHED, False)
    return store


def settle(store: RunStore) -> None:
    """Commit a batch of writes `store` may hold open, so another connection can read and write it.

    Stores that batch their commits have `flush()`; a store that commits every write needs nothing.
    """
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()


def mark_finished(store: RunStore) -> None:
    """Written last by a shard's run: a shard killed mid-way stays unfinished, and merge says so."""
    store.set_meta(FINISHED, True)


class ShardsIncomplete(OpenCharacterError):
    """Merged what exists, but some shards are missing or did not finish: exit 3, as for failed items.

    Raised after the run files are written, so the partial result is usable and a rerun of merge
    (once the shards are done) completes it.
    """

    exit_code = 3

    def __init__(self, missing: list[str], unfinished: list[str]) -> None:
        super().__init__(missing, unfinished)
        self.missing, self.unfinished = missing, unfinished

    def __str__(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"shards not started: {', '.join(self.missing)}")
        if self.unfinished:
            parts.append(f"shards not finished: {', '.join(self.unfinished)}")
        return "; ".join(parts) + " — run them (`--shard i/N`), then merge again"


@dataclass
class MergeReport:
    shards: list[str] = field(default_factory=list)
    records: int = 0
    calls: int = 0
    failures: int = 0
    sessions: int = 0
    missing: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def find_shards(run_dir: str | Path) -> list[tuple[ShardSpec, Path]]:
    """Every shard directory with a store, in (count, index) order."""
    root = Path(run_dir) / SHARDS_DIR
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        match = _SHARD_DIR.match(path.name)
        if match and (path / STORE).exists():
            found.append((ShardSpec(int(match.group(1)), int(match.group(2))), path))
    return sorted(found, key=lambda entry: (entry[0].count, entry[0].index))


def merge_shards(run_dir: str | Path, *, strict: bool = False) -> MergeReport:
    """Merge every shard store under `run_dir` into its run store (the run files are the caller's:
    `opencharacter.pipeline.shards.merge_shards` writes them, the Ray executor's session does).

    Checks every shard before copying anything, so a refused shard leaves the run store untouched.
    With `strict`, raises `ShardsIncomplete` when a shard of some `N` is missing or unfinished.
    """
    run_dir = Path(run_dir)
    shards = find_shards(run_dir)
    report = MergeReport()
    run_store = RunStore(run_dir)
    try:
        teacher = run_store.get_meta(TEACHER)
        settings: dict[str, Any] = run_store.get_meta(SETTINGS, {})
        pairing: dict[str, Any] | None = run_store.get_meta(PAIRING)
        checked = []
        for spec, path in shards:
            shard = RunStore(path)  # migrates an older shard store to the current schema
            try:
                made_by = shard.get_meta(TEACHER)
                agree_teacher(path, made_by, teacher, NOT_MERGED)
                teacher = teacher or made_by
                settings = agree_settings(path, settings, shard.get_meta(SETTINGS, {}), NOT_MERGED)
                pairing = agree_pairing(path, pairing, shard.get_meta(PAIRING), NOT_MERGED, grow_only=False)
                if not shard.get_meta(FINISHED, False):
                    report.unfinished.append(str(spec))
                checked.append((spec, path, shard.get_meta(COMMANDS, []), shard.failures()))
            finally:
                shard.close()
        for spec, path, commands, failures in checked:
            copied = transfer.merge(run_store.path, path / STORE, failures)
            report.calls += copied.calls
            report.records += copied.records
            report.failures += copied.failures
            report.sessions += copied.sessions
            _merge_commands(run_store, commands)
            report.shards.append(str(spec))
        if teacher is not None:
            run_store.set_meta(TEACHER, teacher)
        run_store.set_meta(SETTINGS, settings)
        if pairing is not None:
            run_store.set_meta(PAIRING, pairing)
        report.missing = _missing(shards)
    finally:
        run_store.close()
    if strict and (report.missing or report.unfinished):
        raise ShardsIncomplete(report.missing, report.unfinished)
    return report


def _merge_commands(run_store: RunStore, commands: list[Any]) -> None:
    """The dataset card lists the commands that made the run; a shard's are added once."""
    history = run_store.get_meta(COMMANDS, [])
    added = [entry for entry in commands if entry not in history]
    if added:
        run_store.set_meta(COMMANDS, history + added)


def _missing(shards: list[tuple[ShardSpec, Path]]) -> list[str]:
    present = {(spec.count, spec.index) for spec, _ in shards}
    return [
        str(ShardSpec(index, count))
        for count in sorted({count for count, _ in present})
        for index in range(count)
        if (count, index) not in present
    ]
