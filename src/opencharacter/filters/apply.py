"""Run the configured filters over a run and write the survivors beside it (`RUN/filtered/`).

The store keeps everything; filtering only decides what goes into the training files, so a
different threshold never needs a regeneration.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from opencharacter.config import FiltersConfig
from opencharacter.fileio import write_json, write_jsonl
from opencharacter.filters import junk, rules
from opencharacter.filters.near_duplicates import near_duplicates
from opencharacter.filters.originals import Originals, load_originals
from opencharacter.records import Character, Dialogue, PreferencePair
from opencharacter.selection import PREFERENCES, dialogue_stage, run_candidates
from opencharacter.stages.dialogues import candidate_id
from opencharacter.stages.profiles import STAGE as PROFILES
from opencharacter.store import RunStore
from opencharacter.store.layout import CHARACTERS, DIALOGUES, FILTER_REPORT, FILTERED, PREFERENCE_PAIRS, existing_run

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
    """The survivors of `config`'s filters, written to `out` (default RUN/filtered/), and what went.

    Streams the store: characters and dialogues pass a page at a time, a dialogue's character is
    read by id, and the near-duplicate pass keeps only the kept profiles (see `near_duplicates`),
    so memory stays bounded by the run's distinct characters, not its size or duplicate rate.
    """
    run = existing_run(run)
    target = Path(out) if out is not None else run / FILTERED
    store = RunStore(run)
    try:
        report = FilterReport()
        enabled, report.notes = categories(config)
        report.removed.update(dict.fromkeys(enabled, 0))
        dropped_characters: dict[str, str] = {}
        if config.near_duplicate_profiles is not None:
            outcome = near_duplicates(
                store.records(PROFILES, Character),
                config.near_duplicate_profiles,
                method=config.near_duplicate_method,
                candidates=config.near_duplicate_candidates,
            )
            dropped_characters = outcome.dropped
            report.removed[NEAR_DUPLICATE] += len(dropped_characters)
            report.notes += outcome.notes()
        dialogues_stage = dialogue_stage(store)
        rewrites = (
            store.distinct_values(dialogues_stage, "question_id", {"strategy": "rewrite"})
            if config.copy_original is not None
            else set()
        )
        originals = load_originals(store, rewrites)
        characters = _Characters(store)

        def kept_characters() -> Iterator[str]:
            for line in store.record_lines(PROFILES):
                report.characters_in += 1
                character_id = json.loads(line)["character_id"]
                if character_id not in dropped_characters:
                    report.characters_out += 1
                    yield line

        survivors: set[str] = set()
        unchecked = 0

        def kept_dialogues() -> Iterator[str]:
            nonlocal unchecked
            for line in store.record_lines(dialogues_stage):
                dialogue = Dialogue.model_validate_json(line)
                report.dialogues_in += 1
                if config.copy_original is not None and dialogue.strategy == "rewrite":
                    unchecked += dialogue.question_id not in originals.answers
                reason = _first_reason(dialogue, characters, dropped_characters, config, originals)
                if reason is not None:
                    report.removed[reason.split(":")[0]] += 1
                    continue
                report.dialogues_out += 1
                survivors.add(candidate_id(dialogue.question_id, dialogue.character_id, dialogue.strategy))
                yield line

        write_jsonl(target / CHARACTERS, kept_characters())
        write_jsonl(target / DIALOGUES, kept_dialogues())
        if run_candidates(store) > 1:
            report.preferences_in = report.preferences_out = 0

            def kept_pairs() -> Iterator[str]:
                for pair in store.records(PREFERENCES, PreferencePair):
                    report.preferences_in += 1  # type: ignore[operator]
                    if pair.pair_id in survivors:
                        report.preferences_out += 1  # type: ignore[operator]
                        yield pair.model_dump_json()

            write_jsonl(target / PREFERENCE_PAIRS, kept_pairs())
    finally:
        store.close()
    if unchecked:
        where = f" (not found: {', '.join(originals.missing)})" if originals.missing else ""
        report.notes.append(f"copy_original: {unchecked} rewrite dialogues not checked, originals unavailable{where}")
    write_json(target / FILTER_REPORT, {"config": config.model_dump(), **report.as_dict()})
    return target, report


class _Characters:
    """A dialogue's character, read from the store by id; the last few kept (dialogues come in
    instruction order, so a character recurs far apart: the cache is small on purpose)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._cache: dict[str, Character | None] = {}

    def get(self, character_id: str) -> Character | None:
        if character_id not in self._cache:
            if len(self._cache) >= 1024:
                self._cache.pop(next(iter(self._cache)))
            self._cache[character_id] = self.store.get_record(PROFILES, character_id, Character)
        return self._cache[character_id]


def _first_reason(
    dialogue: Dialogue,
    characters: _Characters,
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
