"""`opencharacter import`: the released data as a run directory that every command accepts.

The run gets what a synthesized run has: `characters.jsonl` (profiles parsed from the release's
text, which is kept verbatim), `dialogues.jsonl` (each question and answer as `messages` under our
character system prompt, so `train`, `filter`, `export` and `eval --run` treat it like our own),
the store, and a dataset card whose provenance names the release (and its Hub commit).

Resumable and idempotent: records are keyed by id, and a checkpoint (byte offset, line, counts)
is committed every CHECKPOINT_ROWS dialogues, so a killed import continues where it stopped and a
finished one does nothing. A run directory holds one release import: another source, strategy
or system prompt needs a new --out, and data made by a teacher is never mixed in.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opencharacter.errors import ConfigError, InputError, Interrupted
from opencharacter.records import Character, ChatMessage, Dialogue
from opencharacter.sources.release import (
    ANSWER_KEY,
    ReleaseFiles,
    iter_rows,
    locate_release,
    question_of,
    release_license,
    text_field,
)
from opencharacter.sources.release_profiles import parse_profile_text

RELEASE_MODEL = "opencharacter-release"
"""The `model` of imported records: the release does not say which teacher wrote each row."""
RELEASE_PROMPT = "opencharacter-release@v1"
SOURCE = "opencharacter-release"
IDENTITY_META = "release"
PROGRESS_META = "release_progress"
CHECKPOINT_ROWS = 20_000


@dataclass
class ImportReport:
    run: Path
    origin: str
    characters_read: int = 0
    characters_kept: int = 0
    characters_dropped: Counter[str] = field(default_factory=Counter)
    attributes_filled: int = 0
    attributes_shortened: int = 0
    dialogues_read: int = 0
    dialogues_kept: int = 0
    dialogues_dropped: Counter[str] = field(default_factory=Counter)
    invalid: list[InputError] = field(default_factory=list)
    finished: bool = False
    """Every dialogue line was read (False when --limit stopped it: a rerun with a larger one goes on)."""

    def lines(self) -> list[str]:
        def reasons(counter: Counter[str]) -> str:
            return "; ".join(f"{n} {reason}" for reason, n in counter.most_common()) or "none"

        lines = [
            f"characters: {self.characters_kept} of {self.characters_read} rows imported; dropped: "
            f"{reasons(self.characters_dropped)}",
            f"dialogues: {self.dialogues_kept} of {self.dialogues_read} rows imported; dropped: "
            f"{reasons(self.dialogues_dropped)}",
        ]
        if self.attributes_filled or self.attributes_shortened:
            lines.append(
                f"profiles: {self.attributes_filled} missing attributes recorded as 'unspecified', "
                f"{self.attributes_shortened} long ones shortened (the released text is kept whole)"
            )
        if self.invalid:
            lines.append(f"{len(self.invalid)} malformed lines skipped, first: {self.invalid[0]}")
        if not self.finished:
            lines.append("stopped at --limit: rerun with a larger --limit (or none) to import more")
        return lines


def _identity(files: ReleaseFiles, strategy: str, system_version: str) -> dict[str, Any]:
    return {
        "origin": files.origin,
        "strategy": strategy,
        "system_prompt_version": system_version,
        "sizes": {
            files.characters.name: files.characters.stat().st_size,
            files.dialogues.name: files.dialogues.stat().st_size,
        },
    }


def _check_run(store: Any, run: Path, identity: dict[str, Any]) -> None:
    recorded = store.get_meta(IDENTITY_META)
    if recorded is None:
        teacher = store.get_meta("teacher")
        if teacher is not None or store.count("profiles") or store.count("dialogues"):
            raise ConfigError(
                f"{run} already holds data made by {teacher or 'another command'}: import into a new --out"
            )
        return
    if recorded != identity:
        changed = [
            f"{key} {recorded.get(key)!r} → {identity[key]!r}" for key in identity if recorded.get(key) != identity[key]
        ]
        raise ConfigError(f"{run} holds another import ({'; '.join(changed)}): use a new --out")


class _Importer:
    def __init__(
        self, store: Any, files: ReleaseFiles, report: ImportReport, strategy: str, skip_invalid: bool
    ) -> None:
        from opencharacter.prompts.system_prompt import system_template

        self.store, self.files, self.report = store, files, report
        self.strategy, self.skip_invalid = strategy, skip_invalid
        self.system = system_template()
        self.prompts: dict[str, str] = {}
        self.dropped_characters: set[str] = set()

    def invalid(self, error: InputError) -> None:
        if not self.skip_invalid:
            raise error
        self.report.invalid.append(error)

    def characters(self, done: bool) -> None:
        """Every character, checked and stored once; on a resumed import, read back from the store."""
        report, where = self.report, str(self.files.characters)
        if done:
            state = self.store.get_meta(PROGRESS_META)["characters"]
            for character in self.store.records("profiles", Character):
                self.prompts[character.character_id] = self._prompt(character.persona, character.character)
            self.dropped_characters = set(state["dropped_ids"])
            report.characters_read, report.characters_kept = state["read"], state["kept"]
            report.characters_dropped = Counter(state["dropped"])
            report.attributes_filled, report.attributes_shortened = state["filled"], state["shortened"]
            return
        for line, _, row in iter_rows(self.files.characters):
            if isinstance(row, InputError):
                self.invalid(row)
                continue
            report.characters_read += 1
            character_id = text_field(row, "character_id", where, line)
            if not character_id:
                self.invalid(InputError(where, line, "'character_id' is empty"))
                continue
            if character_id in self.prompts or character_id in self.dropped_characters:
                report.characters_dropped["duplicate character_id"] += 1
                continue
            persona, text = text_field(row, "persona", where, line), text_field(row, "character", where, line)
            parsed = parse_profile_text(text)
            if parsed.profile is None or not persona:
                report.characters_dropped[parsed.problem or "empty persona"] += 1
                self.dropped_characters.add(character_id)
                continue
            report.attributes_filled += len(parsed.filled)
            report.attributes_shortened += len(parsed.shortened)
            character = Character(
                character_id=character_id, persona=persona, character=text, profile=parsed.profile,
                model=RELEASE_MODEL, prompt_version=RELEASE_PROMPT,
            )  # fmt: skip
            self.store.put_record("profiles", character_id, f"{line:012d}", character)
            self.prompts[character_id] = self._prompt(persona, text)
            report.characters_kept += 1
        state = {
            "read": report.characters_read, "kept": report.characters_kept,
            "dropped": dict(report.characters_dropped), "dropped_ids": sorted(self.dropped_characters),
            "filled": report.attributes_filled, "shortened": report.attributes_shortened,
        }  # fmt: skip
        self.store.set_meta(PROGRESS_META, {"characters": state, "dialogues": None})

    def _prompt(self, persona: str, character: str) -> str:
        return self.system.render_block("system", persona=persona, character=character)

    def dialogues(self, limit: int | None, progress: Any) -> None:
        """Stream the dialogue lines from the checkpoint on; checkpoint every CHECKPOINT_ROWS."""
        from opencharacter.stages.dialogues import candidate_id

        report, where = self.report, str(self.files.dialogues)
        state = self.store.get_meta(PROGRESS_META)
        checkpoint = state["dialogues"] or {"offset": 0, "line": 0, "read": 0, "kept": 0, "dropped": {}, "done": False}
        report.dialogues_read, report.dialogues_kept = checkpoint["read"], checkpoint["kept"]
        report.dialogues_dropped = Counter(checkpoint["dropped"])
        report.finished = checkpoint["done"]
        if report.finished or (limit is not None and report.dialogues_kept >= limit):
            return
        done_at = {"offset": checkpoint["offset"], "line": checkpoint["line"]}  # the last line fully handled
        since, finished = 0, True

        def save(done: bool) -> None:
            state["dialogues"] = {
                **done_at, "read": report.dialogues_read, "kept": report.dialogues_kept,
                "dropped": dict(report.dialogues_dropped), "done": done,
            }  # fmt: skip
            self.store.set_meta(PROGRESS_META, state)

        try:
            for line, offset, row in iter_rows(self.files.dialogues, done_at["offset"], done_at["line"]):
                if isinstance(row, InputError):
                    self.invalid(row)
                else:
                    dropped = self._dialogue(row, where, line, candidate_id)
                    report.dialogues_read += 1
                    if dropped:
                        report.dialogues_dropped[dropped] += 1
                    else:
                        report.dialogues_kept += 1
                done_at["offset"], done_at["line"] = offset, line
                since += 1
                if since >= CHECKPOINT_ROWS:
                    save(False)
                    since = 0
                    progress(report)
                if limit is not None and report.dialogues_kept >= limit:
                    finished = False
                    break
        except KeyboardInterrupt:
            save(False)  # everything up to this line is in the store: a rerun goes on from here
            raise Interrupted(2) from None
        report.finished = finished
        save(finished)

    def _unusable(self, character_id: str, question_id: str, question: str, answer: str) -> str | None:
        """Why a dialogue row cannot become a training dialogue (counted, not an error), else None."""
        if not question_id:
            return "without a question_id"
        if character_id in self.dropped_characters:
            return "of a dropped character"
        if character_id not in self.prompts:
            return "of a character the release's profiles do not have"
        if not question:
            return "with an empty question"
        if not answer:
            return "with an empty answer"
        return None

    def _dialogue(self, row: dict[str, Any], where: str, line: int, candidate_id: Any) -> str | None:
        """Store the row as a Dialogue; the reason it was dropped, else None."""
        character_id = text_field(row, "character_id", where, line)
        question_id = text_field(row, "question_id", where, line)
        question, answer = question_of(row, where, line), text_field(row, ANSWER_KEY, where, line)
        reason = self._unusable(character_id, question_id, question, answer)
        if reason is not None:
            return reason
        dialogue_id = candidate_id(question_id, character_id, self.strategy)
        dialogue = Dialogue(
            dialogue_id=dialogue_id, question_id=question_id, character_id=character_id, strategy=self.strategy,
            source=SOURCE,
            messages=[
                ChatMessage(role="system", content=self.prompts[character_id]),
                ChatMessage(role="user", content=question),
                ChatMessage(role="assistant", content=answer),
            ],
            character_answer=answer, model=RELEASE_MODEL, prompt_version=RELEASE_PROMPT,
            system_prompt_version=self.system.id,
        )  # fmt: skip
        self.store.put_record("dialogues", dialogue_id, f"{line:012d}", dialogue)
        return None


def import_release(
    source: str,
    out: str | Path,
    *,
    strategy: Literal["generate", "rewrite"] = "generate",
    limit: int | None = None,
    skip_invalid: bool = False,
    revision: str | None = None,
    license: str | None = None,
    progress: Any = None,
) -> ImportReport:
    """Import the release at `source` (a directory, or `hf:owner/name`) into the run directory `out`."""
    from opencharacter.export.run_files import write_run_files
    from opencharacter.prompts.system_prompt import system_template
    from opencharacter.store import RunStore
    from opencharacter.store.lock import RunLock

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of dialogues, got {limit}")
    run = Path(out)
    files = locate_release(source, revision)
    identity = _identity(files, strategy, system_template().id)
    report = ImportReport(run, files.origin)
    created = not run.exists()
    started, clock = time.time(), time.monotonic()
    with RunLock(run, "import"):
        store = RunStore(run)
        try:
            _check_run(store, run, identity)
            store.set_meta("teacher", RELEASE_MODEL)
            store.set_meta("decoding", "as released")
            store.set_meta(IDENTITY_META, identity)
            store.set_meta("card", _card_meta(files, license, store.get_meta("card") or {}))
            importer = _Importer(store, files, report, strategy, skip_invalid)
            importer.characters(done=bool((store.get_meta(PROGRESS_META) or {}).get("characters")))
            importer.dialogues(limit, progress or (lambda _: None))
            _record_command(store, files, strategy, limit)
            store.add_session("import", started, time.monotonic() - clock, 0, 0)
            write_run_files(store)
        except Interrupted:
            write_run_files(store)
            store.close()
            raise
        except (InputError, ConfigError):
            store.close()
            if created:
                _remove_run(run)
            raise
        except BaseException:
            store.close()
            raise
        store.close()
    return report


def _card_meta(files: ReleaseFiles, license: str | None, before: dict[str, Any]) -> dict[str, Any]:
    """What the dataset card says about where the data came from and under which terms."""
    card = dict(before)
    card["license"] = license or before.get("license") or release_license(files)
    card["source_datasets"] = sorted({*before.get("source_datasets", []), files.hub_id or "xywang1/OpenCharacter"})
    card["origin"] = (
        files.origin if files.origin.startswith("hf:") else f"local copy of the release ({Path(files.origin).name})"
    )
    return card


def _record_command(store: Any, files: ReleaseFiles, strategy: str, limit: int | None) -> None:
    history = store.get_meta("commands", [])
    entry = {
        "command": "import",
        "import": {"from": "opencharacter-release", "origin": files.origin, "strategy": strategy, "limit": limit},
    }
    if not history or history[-1] != entry:
        history.append(entry)
        store.set_meta("commands", history)


def _remove_run(run: Path) -> None:
    """A failed first import leaves no run directory behind (exit 2 writes nothing)."""
    shutil.rmtree(run, ignore_errors=True)
