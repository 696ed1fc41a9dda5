"""Persona readers: Persona Hub `persona.jsonl`, Persona Hub synthetic-data files, plain text, datasets.

Personas are normalised (whitespace) and exact duplicates dropped, because the character id is
derived from the text: two copies would be one character twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from opencharacter.errors import ConfigError, InputError
from opencharacter.records import Persona
from opencharacter.sources.reader import (
    InvalidHandler,
    LoadReport,
    check_limit,
    nothing_read,
    read_json_items,
    read_text_lines,
)

PersonaFormat = Literal["auto", "persona", "personahub", "text", "dataset", "cards"]
PERSONA_FORMATS: tuple[str, ...] = ("auto", "persona", "personahub", "text", "dataset", "cards")

# Columns tried in order when a JSON record or dataset row is not given an explicit column.
_KNOWN_COLUMNS = ("persona", "input persona")


def iter_personas(
    source: str | Path,
    *,
    fmt: str = "auto",
    column: str | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    split: str = "train",
) -> tuple[Iterator[Persona], LoadReport]:
    """Personas one at a time, and the report that counts them (complete once the iterator is spent).

    Same arguments and errors as `load_personas`; options are checked now, the file as it is read.
    Only the 64-bit ids of the personas seen are kept (for de-duplication), so memory stays flat.
    """
    if fmt not in PERSONA_FORMATS:
        raise ConfigError(f"unknown persona format {fmt!r}; choose one of {', '.join(PERSONA_FORMATS)}")
    check_limit(limit)
    report = LoadReport(str(source))
    return _personas(Path(source), fmt, column, skip_invalid, limit, split, report), report


def load_personas(
    source: str | Path,
    *,
    fmt: str = "auto",
    column: str | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    split: str = "train",
) -> tuple[list[Persona], LoadReport]:
    """Read personas from a file, a local `datasets` directory or (when asked for) a hub dataset id."""
    personas, report = iter_personas(
        source, fmt=fmt, column=column, skip_invalid=skip_invalid, limit=limit, split=split
    )
    return list(personas), report


def _personas(
    path: Path, fmt: str, column: str | None, skip_invalid: bool, limit: int | None, split: str, report: LoadReport
) -> Iterator[Persona]:
    handler = InvalidHandler(report, skip_invalid)
    seen: set[int] = set()
    for line, text in _raw_personas(path, fmt, column, handler, split):
        try:
            persona = Persona(persona=text)
        except ValidationError as exc:
            handler(InputError(str(path), line, _first_error(exc)))
            continue
        key = int(persona.character_id, 16)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        report.kept += 1
        yield persona
        if limit is not None and report.kept >= limit:
            return
    if report.kept == 0:
        raise InputError(str(path), None, nothing_read("personas", report))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return str(error["msg"]).removeprefix("Value error, ")


def _raw_personas(
    path: Path, fmt: str, column: str | None, handler: InvalidHandler, split: str
) -> Iterator[tuple[int | None, Any]]:
    if fmt == "cards" or (fmt == "auto" and path.suffix.lower() == ".png"):
        yield from _card_personas(path)
        return
    if fmt == "auto" and not path.suffix and not path.exists():
        # Never guess that a mistyped path is a hub dataset id: that means a network lookup and a
        # traceback from `datasets`. A hub dataset is read only when asked for by name.
        hint = "for a hub dataset, pass --persona-format dataset"
        raise InputError(str(path), None, f"no such file or directory ({hint})")
    if fmt == "dataset" or (fmt == "auto" and path.is_dir() and not path.suffix):
        yield from _dataset_rows(str(path), column, split)
        return
    if fmt == "text" or (fmt == "auto" and path.suffix.lower() in {".txt", ".text"}):
        yield from read_text_lines(path)
        return
    wanted = column or {"persona": "persona", "personahub": "input persona"}.get(fmt)
    for line, item in read_json_items(path, handler):
        if not isinstance(item, dict):
            handler(InputError(str(path), line, f"expected a JSON object, got {type(item).__name__}"))
            continue
        key = wanted or next((k for k in _KNOWN_COLUMNS if k in item), None)
        if key is None or key not in item:
            names = repr(wanted) if wanted else " or ".join(repr(k) for k in _KNOWN_COLUMNS)
            handler(InputError(str(path), line, f"missing field {names}"))
            continue
        value = item[key]
        if not isinstance(value, str):
            handler(InputError(str(path), line, f"field {key!r} must be a string, got {type(value).__name__}"))
            continue
        yield line, value


def _card_personas(path: Path) -> Iterator[tuple[int | None, Any]]:
    """Character cards (a file, or a folder of .json/.png cards) as seeds: their persona line."""
    from opencharacter.cards import character_from_card, read_card

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".png")) if path.is_dir() else [path]
    for file in files:
        persona, _ = character_from_card(read_card(file))
        yield None, persona


def _dataset_rows(source: str, column: str | None, split: str) -> Iterator[tuple[int | None, Any]]:
    """Rows of a saved `datasets` directory, or of a hub dataset — only because the user named one."""
    import datasets  # heavy: imported only for this source

    path = Path(source)
    if (path.is_dir() and (path / "dataset_info.json").exists()) or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict) and split not in loaded:
            raise InputError(source, None, f"no split {split!r} (splits: {', '.join(loaded)})")
        table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    else:
        try:
            table = datasets.load_dataset(source, split=split)
        except (FileNotFoundError, ConnectionError) as exc:  # DatasetNotFoundError is a FileNotFoundError
            raise InputError(source, None, f"cannot load this dataset: {exc}") from None
    key = column or next((k for k in _KNOWN_COLUMNS if k in table.column_names), None)
    if key is None or key not in table.column_names:
        raise ConfigError(
            f"{source}: no persona column; pass --persona-column (columns: {', '.join(table.column_names)})"
        )
    for index, value in enumerate(table[key]):
        if not isinstance(value, str):
            raise InputError(source, index + 1, f"column {key!r} must hold strings")
        yield index + 1, value
