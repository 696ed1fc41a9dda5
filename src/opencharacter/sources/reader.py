"""Line-aware, streaming reading of JSON Lines, JSON arrays and text files.

Every item comes with the 1-based line it starts on, so any later problem (a missing field,
an empty persona) can be reported as `file:line: problem` — the one thing a user needs to fix it.
JSON Lines and text files are read one line at a time (flat memory on a 300k-line file); a JSON
array is parsed as one document, as it must be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from opencharacter.errors import ConfigError, InputError

# A `\uD800`–`\uDFFF` escape: only these can smuggle a lone surrogate past a UTF-8 file.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


@dataclass
class LoadReport:
    """What a loader saw: every record it read was kept, dropped as a duplicate or skipped as invalid.

    `read` is derived from the three, so the counts always add up (with --skip-invalid too).
    """

    path: str
    kept: int = 0
    duplicates: int = 0
    invalid: list[InputError] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.kept + self.duplicates + len(self.invalid)

    def summary(self) -> str:
        text = f"{self.path}: {self.kept} kept of {self.read} read, {self.duplicates} exact duplicates dropped"
        if self.invalid:
            text += f", {len(self.invalid)} invalid skipped"
        return text


class InvalidHandler:
    """Raise the first InputError, or (with --skip-invalid) record it in the report and go on."""

    def __init__(self, report: LoadReport, skip_invalid: bool) -> None:
        self.report, self.skip_invalid = report, skip_invalid

    def __call__(self, error: InputError) -> None:
        if not self.skip_invalid:
            raise error
        self.report.invalid.append(error)


def check_limit(limit: int | None) -> None:
    """`--limit 0` used to read one record and `--limit -1` everything: both are mistakes, say so."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit must be a positive number of records, got {limit!r}")


def nothing_read(what: str, report: LoadReport) -> str:
    """Why a source gave no records: an empty file is a mistake, not an empty dataset to build on."""
    if report.invalid:
        return f"no valid {what} ({len(report.invalid)} invalid skipped)"
    return f"no {what} found: it is empty"


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, expected a file") from None
    except PermissionError:
        raise InputError(str(path), None, "permission denied: cannot read the file") from None


def _decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    if path.is_dir():  # some platforms open a directory without complaint
        raise InputError(str(path), None, "is a directory, expected a file")
    with _open(path) as stream:
        for number, raw in enumerate(stream, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.rstrip(b"\n")
            try:
                yield number, raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError as exc:
                raise InputError(
                    str(path), number, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a text file."""
    for number, line in _decode_lines(path):
        if line.strip():
            yield number, line


def _lone_surrogate(item: Any) -> str | None:
    """The first string in `item` that UTF-8 cannot encode (a lone `\\ud800`), else None."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
    return None


def _surrogate_problem(escape: str) -> str:
    return f"text holds a lone surrogate escape ({escape}), which is not a character: fix or drop the record"


def read_json_items(path: Path, on_invalid: Callable[[InputError], None]) -> Iterator[tuple[int, Any]]:
    """JSON objects from a JSON Lines file or a JSON array, each with its starting line.

    A `.json` file may be an array (Alpaca, LIMA dumps) or JSON Lines in disguise; the first
    non-blank character decides. Every problem goes to `on_invalid` (or, for a broken array,
    is raised) as file:line: a malformed line, nesting too deep for Python's parser, or a lone
    surrogate escape that would fail much later, when the text is written out.
    """
    lines = _decode_lines(path)
    head: list[tuple[int, str]] = []
    for number, line in lines:
        head.append((number, line))
        if line.strip():
            break
    if head and head[-1][1].lstrip().startswith("["):
        text = "\n".join(line for _, line in [*head, *lines])
        yield from _read_array(text, str(path), on_invalid)
        return
    for number, line in _chain(head, lines):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            on_invalid(InputError(str(path), number, f"malformed JSON: {exc.msg} (column {exc.colno})"))
            continue
        except RecursionError:
            on_invalid(InputError(str(path), number, "JSON nested too deeply to read"))
            continue
        if _SURROGATE_ESCAPE.search(line) and (escape := _lone_surrogate(item)) is not None:
            on_invalid(InputError(str(path), number, _surrogate_problem(escape)))
            continue
        yield number, item


def _chain(head: list[tuple[int, str]], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield from head
    yield from rest


def _read_array(text: str, path: str, on_invalid: Callable[[InputError], None]) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    size = len(text)
    may_hold_surrogates = _SURROGATE_ESCAPE.search(text) is not None

    def skip_ws(at: int) -> int:
        while at < size and text[at] in " \t\r\n":
            at += 1
        return at

    counted = {"at": 0, "line": 1}  # lines are counted incrementally: items only move forward

    def line_of(at: int) -> int:
        if at < counted["at"]:
            return text.count("\n", 0, at) + 1
        counted["line"] += text.count("\n", counted["at"], at)
        counted["at"] = at
        return counted["line"]

    pos = skip_ws(pos)
    if pos < size and text[pos] == "]":
        return
    while True:
        pos = skip_ws(pos)
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            # A broken array cannot be resynchronised reliably: report and stop, even when skipping.
            raise InputError(path, exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise InputError(path, line_of(pos), "JSON nested too deeply to read") from None
        if may_hold_surrogates and (escape := _lone_surrogate(item)) is not None:
            on_invalid(InputError(path, line_of(pos), _surrogate_problem(escape)))
        else:
            yield line_of(pos), item
        pos = skip_ws(end)
        if pos < size and text[pos] == ",":
            pos += 1
            continue
        if pos < size and text[pos] == "]":
            return
        raise InputError(path, line_of(pos), "malformed JSON: expected ',' or ']' in the array")
