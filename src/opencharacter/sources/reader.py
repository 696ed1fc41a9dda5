"""Line-aware reading of JSON Lines, JSON arrays and text files.

Every item comes with the 1-based line it starts on, so any later problem (a missing field,
an empty persona) can be reported as `file:line: problem` — the one thing a user needs to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencharacter.errors import InputError


@dataclass
class LoadReport:
    """What a loader saw: how many items it read, kept, dropped as duplicates or skipped as invalid."""

    path: str
    read: int = 0
    kept: int = 0
    duplicates: int = 0
    invalid: list[InputError] = field(default_factory=list)

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


def _decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, expected a file") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
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


def read_json_items(path: Path, on_invalid: Callable[[InputError], None]) -> Iterator[tuple[int, Any]]:
    """JSON objects from a JSON Lines file or a JSON array, each with its starting line.

    A `.json` file may be an array (Alpaca, LIMA dumps) or JSON Lines in disguise; the first
    non-blank character decides.
    """
    lines = list(_decode_lines(path))
    first = next((line.lstrip() for _, line in lines if line.strip()), "")
    if first.startswith("["):
        yield from _read_array("\n".join(line for _, line in lines), str(path), on_invalid)
        return
    for number, line in lines:
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            on_invalid(InputError(str(path), number, f"malformed JSON: {exc.msg} (column {exc.colno})"))


def _read_array(text: str, path: str, on_invalid: Callable[[InputError], None]) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    size = len(text)

    def skip_ws(at: int) -> int:
        while at < size and text[at] in " \t\r\n":
            at += 1
        return at

    def line_of(at: int) -> int:
        return text.count("\n", 0, at) + 1

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
        yield line_of(pos), item
        pos = skip_ws(end)
        if pos < size and text[pos] == ",":
            pos += 1
            continue
        if pos < size and text[pos] == "]":
            return
        raise InputError(path, line_of(pos), "malformed JSON: expected ',' or ']' in the array")
