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
from opencharacter.sources.reader import InvalidHandler, LoadReport, read_json_items, read_text_lines

PersonaFormat = Literal["auto", "persona", "personahub", "text", "dataset", "cards"]
PERSONA_FORMATS: tuple[str, ...] = ("auto", "persona", "personahub", "text", "dataset", "cards")

# Columns tried in order when a JSON record or dataset row is not given an explicit column.
_KNOWN_COLUMNS = ("persona", "input persona")


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
    if fmt not in PERSONA_FORMATS:
        raise ConfigError(f"unknown persona format {fmt!r}; choose one of {', '.join(PERSONA_FORMATS)}")
    report = LoadReport(str(source))
    handler = InvalidHandler(report, skip_invalid)
    personas: list[Persona] = []
    seen: set[str] = set()
    for line, text in _raw_personas(Path(source), fmt, column, handler, split):
        report.read += 1
        try:
            persona = Persona(persona=text)
        except ValidationError as exc:
            handler(InputError(str(source), line, _first_error(exc)))
            continue
        if persona.persona in seen:
            report.duplicates += 1
            continue
        seen.add(persona.persona)
        personas.append(persona)
        if limit is not None and len(personas) >= limit:
            break
    report.kept = len(personas)
    return personas, report


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return str(error["msg"]).removeprefix("Value error, ")


def _raw_personas(
    path: Path, fmt: str, column: str | None, handler: InvalidHandler, split: str
) -> Iterator[tuple[int | None, Any]]:
    if fmt == "cards" or (fmt == "auto" and path.suffix.lower() == ".png"):
        yield from _card_personas(path)
        return
    if fmt == "dataset" or (fmt == "auto" and (path.is_dir() or not path.exists()) and not path.suffix):
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
        table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    else:
        table = datasets.load_dataset(source, split=split)
    key = column or next((k for k in _KNOWN_COLUMNS if k in table.column_names), None)
    if key is None or key not in table.column_names:
        raise ConfigError(
            f"{source}: no persona column; pass --persona-column (columns: {', '.join(table.column_names)})"
        )
    for index, value in enumerate(table[key]):
        if not isinstance(value, str):
            raise InputError(source, index + 1, f"column {key!r} must hold strings")
        yield index + 1, value
