"""Tell a local path from a hub id before anything is loaded, and fail at once on a missing path.

`datasets` and `transformers` treat any string they cannot open as a hub id and retry the network
(48 s and a traceback for a mistyped run directory). A value that *looks like a path* and does not
exist is a user error: one line naming it, and the closest existing name when there is one.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from opencharacter.errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".txt", ".png", ".yaml", ".yml", ".arrow", ".safetensors"}


def looks_like_path(value: str) -> bool:
    """Explicitly relative or absolute, nested, a file name, or under an existing local directory."""
    if value.startswith(("./", "../", "/", "~", ".\\")) or "\\" in value or value.count("/") > 1:
        return True
    if Path(value).suffix.lower() in _FILE_SUFFIXES:
        return True
    first = value.split("/", 1)[0]
    return "/" in value and Path(first).is_dir()


def looks_like_hub_id(value: str) -> bool:
    """`owner/name`, and not something that reads as a local path."""
    return bool(_HUB_ID.match(value)) and not looks_like_path(value) and not Path(value).exists()


def closest_existing(path: Path) -> Path | None:
    """The existing sibling whose name is closest to `path`'s (difflib), under its nearest existing parent."""
    parent = path.expanduser().parent
    if not parent.is_dir():
        found = closest_existing(parent)
        return found
    try:
        names = [p.name for p in parent.iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    match = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return parent / match[0] if match else None


def missing(value: str | Path, flag: str, what: str = "file or directory") -> ConfigError:
    path = Path(value)
    near = closest_existing(path)
    hint = f" (did you mean {near}?)" if near is not None else ""
    return ConfigError(f"{flag} {value}: no such {what}{hint}")


def require_exists(value: str | Path, flag: str, what: str = "file or directory") -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise missing(value, flag, what)
    return path


def check_model_spec(value: str | None, flag: str = "--model") -> None:
    """A model given as a path must exist; hub ids and 'embedded' pass through to the loader."""
    if value and looks_like_path(value) and not Path(value).expanduser().exists():
        raise missing(value, flag, "model directory")


def check_data_spec(value: str, flag: str = "--data") -> None:
    """Training data: an existing file or directory, or a hub dataset id (owner/name)."""
    if Path(value).expanduser().exists() or looks_like_hub_id(value):
        return
    error = missing(value, flag)
    raise error if looks_like_path(value) else ConfigError(f"{error}, nor a hub dataset id (owner/name)")
