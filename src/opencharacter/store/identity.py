"""What a run directory is: one teacher, one way of decoding, one set of settings per stage, one pairing.

Record ids hash inputs only (a dialogue's id is its question, character and strategy), so a rerun
with another model, prompt version, sampling or pairing seed would keep the old records and add
new ones beside them: a silently mixed dataset. Every command therefore checks the decisions the
run recorded against its own before it makes anything; a shard's decisions are checked the same
way before it is merged. These checks live here, once: `agree_*` compare two sets of decisions
(the run's and a command's or a shard's) and `RunIdentity` applies them to a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opencharacter.errors import ConfigError

if TYPE_CHECKING:
    from opencharacter.store.run_store import RunStore

TEACHER, DECODING, SETTINGS, PAIRING = "teacher", "decoding", "settings", "pairing"
DECISIONS = (TEACHER, SETTINGS, PAIRING)
"""Metadata a shard and its run must agree on: copied into a shard before it runs, checked at merge."""

NEW_OUT = "use a new --out to make data with {what}"
NOT_MERGED = "it cannot be merged into this run"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{"sampling": {"temperature": 0.7}}` → `{"sampling.temperature": 0.7}`, for naming what differs."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def differences(before: Any, after: Any) -> list[str]:
    """`name old → new` for every setting that differs."""
    old, new = flatten(before), flatten(after)
    return [
        f"{name} {old.get(name)!r} → {new.get(name)!r}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]


def agree_teacher(where: str | Path, recorded: str | None, model: str | None, remedy: str | None = None) -> None:
    if recorded is not None and model is not None and recorded != model:
        raise ConfigError(
            f"{where} holds data made by {recorded}, not {model}: {remedy or NEW_OUT.format(what='another model')}"
        )


def agree_decoding(where: str | Path, model: str, recorded: str | None, decoding: str | None) -> None:
    """A backend's `decoding` tag names how it turns logits into text; another one is another dataset."""
    if recorded != decoding:
        raise ConfigError(
            f"{where} holds data {model} decoded another way ({recorded or 'an older version'}, now {decoding}): "
            + NEW_OUT.format(what="this version")
        )


def agree_settings(
    where: str | Path, recorded: Mapping[str, Any], settings: Mapping[str, Any], remedy: str | None = None
) -> dict[str, Any]:
    """Both sets of per-stage settings, merged; a stage both hold with different settings is refused."""
    for key, value in settings.items():
        before = recorded.get(key)
        if before is not None and before != value:
            raise ConfigError(
                f"{where} holds {key} made with other settings ({'; '.join(differences(before, value))}): "
                + (remedy or NEW_OUT.format(what="these settings"))
            )
    return {**recorded, **settings}


def agree_pairing(
    where: str | Path,
    recorded: Mapping[str, Any] | None,
    pairing: Mapping[str, Any] | None,
    remedy: str | None = None,
    *,
    grow_only: bool = True,
) -> dict[str, Any] | None:
    """Dialogues paired under another seed must not join the run. More characters per instruction is
    how a run grows (the pairs drawn before are kept), so the larger count wins; fewer would leave
    the others in the run's files, so a command asking for fewer is refused (`grow_only`)."""
    if recorded is None or pairing is None:
        return dict(pairing or recorded) if (pairing or recorded) is not None else None
    if recorded.get("seed") != pairing.get("seed"):
        raise ConfigError(
            f"{where} pairs instructions with seed {recorded.get('seed')}, not {pairing.get('seed')}: "
            + (remedy or "use a new --out for another pairing")
        )
    if grow_only and pairing["per_instruction"] < recorded["per_instruction"]:
        raise ConfigError(
            f"{where} already has {recorded['per_instruction']} characters per instruction; "
            f"--per-instruction {pairing['per_instruction']} would leave the others in its files: use a new --out"
        )
    return {**recorded, "per_instruction": max(recorded["per_instruction"], pairing["per_instruction"])}


class RunIdentity:
    """The decisions `store` recorded, checked against a command's (and recorded when it is the first)."""

    def __init__(self, store: RunStore, where: str | Path | None = None) -> None:
        self.store = store
        self.where = where if where is not None else store.run_dir

    def teacher(self, model: str, decoding: str | None = None, *, record: bool = True, check_decoding: bool = True):
        """A run directory is one teacher's dataset: resuming with another model would mix two models'
        answers; a backend that now decodes differently (`Backend.decoding`) is another dataset too."""
        recorded = self.store.get_meta(TEACHER)
        if recorded is None:
            if record:
                self.store.set_meta(TEACHER, model)
                if check_decoding:
                    self.store.set_meta(DECODING, decoding)
            return
        agree_teacher(self.where, recorded, model)
        if check_decoding:
            agree_decoding(self.where, recorded, self.store.get_meta(DECODING), decoding)

    def settings(self, key: str, settings: dict[str, Any], *, record: bool = True) -> None:
        """Refuse to add `key` records made with other settings than the ones this run holds."""
        self.claim({key: settings}, record=record)

    def claim(self, settings: Mapping[str, Any], *, record: bool = True) -> None:
        """Every stage's settings at once (a shard takes its run's before it gets work)."""
        recorded: dict[str, Any] = self.store.get_meta(SETTINGS, {})
        merged = agree_settings(self.where, recorded, settings)
        if record and merged != recorded:
            self.store.set_meta(SETTINGS, merged)

    def pairing(self, seed: int, per_instruction: int, *, record: bool = True) -> None:
        """The seed and characters per instruction of the run's pairing (see `stages/pairing.py`)."""
        recorded = self.store.get_meta(PAIRING)
        wanted = {"seed": seed, "per_instruction": per_instruction}
        merged = agree_pairing(self.where, recorded, wanted)
        if record and merged != recorded:
            self.store.set_meta(PAIRING, merged)
