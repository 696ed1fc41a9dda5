"""The paper's released data (`xywang1/OpenCharacter` on the Hub), read as our records.

The release has two JSON Lines files: `synthetic_character.jsonl` (config `Synthetic-Character`:
`character_id` (a UUID), `persona`, `character`, the `Name: …\\nAge: …` profile text, empty in some
rows) and `synthetic_dialogue.jsonl` (`Synthetic-Dialogue`, ~306k rows: `character_id`,
`question_id`, the question, `character_answer`). Dialogues are streamed from a byte offset, one
line at a time, so 1.2 GB never needs to be in memory and an interrupted import resumes where
its last checkpoint was. Every malformed line is an InputError naming file and line.

A hub id is fetched only when the user names one (`hf:owner/name`), through
`huggingface_hub.snapshot_download`, which caches it like any Hub download.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencharacter.errors import ConfigError, InputError, MissingDependencyError

RELEASE_HUB_ID = "xywang1/OpenCharacter"
CHARACTERS_FILE = "synthetic_character.jsonl"
DIALOGUES_FILE = "synthetic_dialogue.jsonl"
RELEASE_LICENSE = "apache-2.0"
"""What the release's dataset card states; used for an imported run's card unless configured."""
QUESTION_KEYS = ("question", "instruction", "prompt", "query", "input", "user", "user_input", "question_text")
"""Where a dialogue row's question text may be: the first of these that holds text is used."""
ANSWER_KEY = "character_answer"
_HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class ReleaseFiles:
    characters: Path
    dialogues: Path
    origin: str
    """Where the files came from, for provenance: `hf:owner/name@<commit>`, or the local directory."""
    hub_id: str | None = None


def _local_files(directory: Path, origin: str, hub_id: str | None = None) -> ReleaseFiles:
    if not directory.exists():
        raise ConfigError(
            f"{directory}: no such directory (expected the release's {CHARACTERS_FILE} and {DIALOGUES_FILE})"
        )
    if not directory.is_dir():
        raise ConfigError(f"{directory}: expected the directory holding {CHARACTERS_FILE} and {DIALOGUES_FILE}")
    files = ReleaseFiles(directory / CHARACTERS_FILE, directory / DIALOGUES_FILE, origin, hub_id)
    missing = [p.name for p in (files.characters, files.dialogues) if not p.is_file()]
    if missing:
        found = sorted(p.name for p in directory.iterdir() if p.suffix in (".jsonl", ".json", ".parquet"))
        raise ConfigError(
            f"{directory}: no {' or '.join(missing)} there (the release's file names)"
            + (f"; found {', '.join(found)}" if found else "")
        )
    return files


def locate_release(source: str, revision: str | None = None) -> ReleaseFiles:
    """A local release directory, or `hf:owner/name` downloaded (and cached) from the Hub."""
    if not source.startswith(_HUB_PREFIX):
        directory = Path(source).expanduser()
        return _local_files(directory, str(directory), None)
    repo_id = source[len(_HUB_PREFIX) :]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"{source}: a hub dataset is named hf:owner/name, e.g. hf:{RELEASE_HUB_ID}")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise MissingDependencyError("huggingface_hub", "local") from None
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision,
                allow_patterns=[CHARACTERS_FILE, DIALOGUES_FILE, "README.md"],
            )
        )
    except HfHubHTTPError as exc:
        raise ConfigError(f"{source}: could not download it from the Hub ({str(exc).splitlines()[0]})") from None
    except (OSError, ValueError) as exc:  # no connection and nothing cached, a bad revision
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{source}: could not download it from the Hub ({reason[:300]})") from None
    # snapshot_download returns `…/snapshots/<commit>`: the exact version imported.
    return _local_files(folder, f"hf:{repo_id}@{folder.name}", repo_id)


def release_license(files: ReleaseFiles) -> str:
    """The license the release's own card declares (`README.md` beside the files), else the known one."""
    card = files.characters.parent / "README.md"
    if card.is_file():
        try:
            from huggingface_hub import DatasetCard

            declared = DatasetCard.load(card).data.license
        except (ImportError, ValueError, OSError):
            declared = None
        if isinstance(declared, str) and declared:
            return declared
    return RELEASE_LICENSE


def _row(raw: bytes, where: str, line: int) -> dict[str, Any] | None:
    text = raw.strip()
    if not text:
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(where, line, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError:
        raise InputError(where, line, "not valid UTF-8") from None
    except RecursionError:
        raise InputError(where, line, "JSON nested too deeply to read") from None
    if not isinstance(row, dict):
        raise InputError(where, line, f"expected a JSON object, got {type(row).__name__}")
    return row


def iter_rows(path: Path, offset: int = 0, line: int = 0) -> Iterator[tuple[int, int, dict[str, Any] | InputError]]:
    """(line number, byte offset after the line, row or the InputError it raised), from `offset`.

    `offset` and `line` are a checkpoint this generator yielded before: reading resumes there.
    Errors are yielded, not raised, so a caller that skips invalid lines can go on.
    """
    where = str(path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InputError(where, None, f"cannot read it ({exc.strerror or exc})") from None
    with stream:
        stream.seek(offset)
        for raw in stream:
            line += 1
            offset += len(raw)
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                row = _row(raw, where, line)
            except InputError as error:
                yield line, offset, error
                continue
            if row is not None:
                yield line, offset, row


def text_field(row: dict[str, Any], key: str, where: str, line: int) -> str:
    """A required string column, stripped (may be empty); missing or not a string is an InputError."""
    value = row.get(key)
    if value is None and key not in row:
        raise InputError(where, line, f"no '{key}' (keys found: {', '.join(sorted(row)) or 'none'})")
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise InputError(where, line, f"'{key}' should be text, got {type(value).__name__}")
    return str(value).strip()


def question_of(row: dict[str, Any], where: str, line: int) -> str:
    """The question text, under the first of QUESTION_KEYS the row has (may be empty)."""
    for key in QUESTION_KEYS:
        if key in row:
            return text_field(row, key, where, line)
    raise InputError(
        where,
        line,
        f"no question text: none of {', '.join(QUESTION_KEYS)} (keys found: {', '.join(sorted(row)) or 'none'})",
    )
