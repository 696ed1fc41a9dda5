"""Run the configured filters over a run and write the survivors beside it (`RUN/filtered/`).

The store keeps everything; filtering only decides what goes into the training files, so a
different threshold never needs a regeneration.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from opencharacter.config import FiltersConfig
from opencharacter.fileio import atomic_open, write_jsonl
from opencharacter.filters import junk, rules
from opencharacter.filters.near_duplicates import near_duplicate_profiles
from opencharacter.filters.originals import Originals, load_originals
from opencharacter.records import Character, Dialogue, PreferencePair
from opencharacter.selection import PREFERENCES, dialogue_stage, run_candidates
from opencharacter.stages.dialogues import candidate_id
from opencharacter.store import RunStore
from opencharacter.store.layout import CHARACTERS, DIALOGUES, FILTER_REPORT, FILTERED, PREFERENCE_PAIRS

NEAR_DUPLICATE = "near-duplicate profile (characters)"
OF_NEAR_DUPLICATE = "character removed as a near-duplicate profile"
TEMPLATE = "template leftover"
NON_LANGUAGE = "non-language text"
COPY_ORIGINAL = "rewrite copies the original answer"


@dataclass
class FilterReport:
    characters_in: int = 0
    characters_out: int = 0
    dialogues_in: int = 0
    dialogues_out: int = 0
    preferences_in: int | None = None
    """Preference pairs of a run with `synthesis.candidates` > 1 (None: the run has none)."""
    preferences_out: int | None = None
    removed: Counter[str] = field(default_factory=Counter)
    """Reason category → dialogues (or characters) removed for it; the first failing rule counts.
    Every enabled filter has an entry, zero included, so a report shows what was checked."""
    notes: list[str] = field(default_factory=list)
    """Filters that are off, and checks that could not run (e.g. instruction files that moved)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "characters_in": self.characters_in,
            "characters_out": self.characters_out,
            "dialogues_in": self.dialogues_in,
            "dialogues_out": self.dialogues_out,
            **(
                {"preferences_in": self.preferences_in, "preferences_out": self.preferences_out}
                if self.preferences_in is not None
                else {}
            ),
            "removed": dict(self.removed),
            "notes": self.notes,
        }


def categories(config: FiltersConfig) -> tuple[list[str], list[str]]:
    """(reason categories of the enabled filters, in the order they are checked; notes for the ones off)."""
    on: list[str] = []
    off: list[str] = []
    switches = [
        ("near_duplicate_profiles", config.near_duplicate_profiles is not None, [NEAR_DUPLICATE, OF_NEAR_DUPLICATE]),
        (
            "drop_truncated",
            config.drop_truncated,
            ["empty answer", "answer cut at max_tokens (finish_reason = length)"],
        ),
        ("template_leftovers", config.template_leftovers, [TEMPLATE]),
        ("non_language", config.non_language, [NON_LANGUAGE]),
        ("copy_original", config.copy_original is not None, [COPY_ORIGINAL]),
        ("break_character", config.break_character, ["breaks character"]),
        (
            "copy_profile_span",
            config.copy_profile_span is not None,
            [f"copies {config.copy_profile_span}+ consecutive words of the profile"],
        ),
    ]
    for name, enabled, reasons in switches:
        if enabled:
            on += reasons
        else:
            off.append(f"off: {name}")
    on += [f"answer shorter than {config.min_answer_chars} characters"] if config.min_answer_chars > 0 else []
    on += [f"answer longer than {config.max_answer_chars} characters"]
    return on, off


def apply_filters(run: str | Path, config: FiltersConfig, out: str | Path | None = None) -> tuple[Path, FilterReport]:
    run = Path(run)
    target = Path(out) if out is not None else run / FILTERED
    store = RunStore(run)
    try:
        characters = list(store.records("profiles", Character))
        dialogues = list(store.records(dialogue_stage(store), Dialogue))
        preferences = list(store.records(PREFERENCES, PreferencePair)) if run_candidates(store) > 1 else None
        rewrites = {d.question_id for d in dialogues if d.strategy == "rewrite"}
        originals = load_originals(store, rewrites if config.copy_original is not None else set())
    finally:
        store.close()
    report = FilterReport(characters_in=len(characters), dialogues_in=len(dialogues))
    enabled, report.notes = categories(config)
    report.removed.update(dict.fromkeys(enabled, 0))
    dropped_characters: dict[str, str] = {}
    if config.near_duplicate_profiles is not None:
        dropped_characters = near_duplicate_profiles(
            characters,
            config.near_duplicate_profiles,
            method=config.near_duplicate_method,
            candidates=config.near_duplicate_candidates,
        )
        report.removed[NEAR_DUPLICATE] += len(dropped_characters)
    kept_characters = [c for c in characters if c.character_id not in dropped_characters]
    by_id = {c.character_id: c for c in kept_characters}
    kept: list[Dialogue] = []
    unchecked = 0
    for dialogue in dialogues:
        if config.copy_original is not None and dialogue.strategy == "rewrite":
            unchecked += dialogue.question_id not in originals.answers
        reason = _first_reason(dialogue, by_id, dropped_characters, config, originals)
        if reason is None:
            kept.append(dialogue)
        else:
            report.removed[reason.split(":")[0]] += 1
    if unchecked:
        where = f" (not found: {', '.join(originals.missing)})" if originals.missing else ""
        report.notes.append(f"copy_original: {unchecked} rewrite dialogues not checked, originals unavailable{where}")
    report.characters_out, report.dialogues_out = len(kept_characters), len(kept)
    write_jsonl(target / CHARACTERS, (c.model_dump_json() for c in kept_characters))
    write_jsonl(target / DIALOGUES, (d.model_dump_json() for d in kept))
    if preferences is not None:
        survivors = {candidate_id(d.question_id, d.character_id, d.strategy) for d in kept}
        kept_pairs = [p for p in preferences if p.pair_id in survivors]
        report.preferences_in, report.preferences_out = len(preferences), len(kept_pairs)
        write_jsonl(target / PREFERENCE_PAIRS, (p.model_dump_json() for p in kept_pairs))
    with atomic_open(target / FILTER_REPORT) as stream:
        stream.write(json.dumps({"config": config.model_dump(), **report.as_dict()}, indent=2))
    return target, report


def _first_reason(
    dialogue: Dialogue,
    characters: dict[str, Character],
    dropped: dict[str, str],
    config: FiltersConfig,
    originals: Originals,
) -> str | None:
    if dialogue.character_id in dropped:
        return OF_NEAR_DUPLICATE
    checks = []
    if config.drop_truncated:
        checks.append(lambda: rules.truncated_or_empty(dialogue))
    if config.template_leftovers:
        checks.append(lambda: _each_answer(dialogue, TEMPLATE, junk.template_leftover))
    if config.non_language:
        checks.append(lambda: _each_answer(dialogue, NON_LANGUAGE, junk.non_language))
    if config.copy_original is not None:
        checks.append(lambda: _copies_original(dialogue, originals, config.copy_original))
    if config.break_character:
        checks.append(lambda: rules.breaks_character(dialogue))
    if config.copy_profile_span:
        span = config.copy_profile_span
        checks.append(lambda: rules.copies_profile(dialogue, characters.get(dialogue.character_id), span))
    checks.append(lambda: rules.length_out_of_bounds(dialogue, config.min_answer_chars, config.max_answer_chars))
    # Lazily, in order: the first failing rule is the one counted, and the rest need not run.
    return next((reason for check in checks if (reason := check())), None)


def _each_answer(dialogue: Dialogue, category: str, check) -> str | None:
    for text in rules.answers(dialogue):
        detail = check(text)
        if detail:
            return f"{category}: {detail}"
    return None


def _copies_original(dialogue: Dialogue, originals: Originals, threshold: float) -> str | None:
    if dialogue.strategy != "rewrite" or dialogue.question_id not in originals.answers:
        return None
    for rewrite, original in zip(rules.answers(dialogue), originals.answers[dialogue.question_id], strict=False):
        share = junk.copied_share(rewrite, original)
        if share is not None and share >= threshold:
            return f"{COPY_ORIGINAL}: {share:.0%} of its word 3-grams"
    return None
