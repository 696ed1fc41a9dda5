"""What a card may say about this machine: nothing. Paths lose their directories, URLs their secrets.

Dataset and model cards publish the settings a run was made with, and those settings name files
(`/home/ana/data/persona.jsonl`) and servers (`https://user:token@gpu1:8000/v1?key=…`). A card
keeps the file's name and the server's scheme, host and path; it never keeps a home directory,
credentials, a query string or a fragment.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opencharacter.models.paths import looks_like_hub_id

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_WINDOWS_ABSOLUTE = re.compile(r"^[a-zA-Z]:[\\/]|^\\\\")


def shareable_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_local_path(text: str) -> bool:
    """Absolute, home-relative or parent-relative: a path that says where things are on this machine."""
    return text.startswith(("/", "~", "../")) or bool(_WINDOWS_ABSOLUTE.match(text))


def shareable_text(text: str) -> str:
    if _URL.match(text):
        return shareable_url(text)
    if is_local_path(text):
        windows = bool(_WINDOWS_ABSOLUTE.match(text))
        name = (PureWindowsPath(text) if windows else PurePosixPath(text)).name
        return f"…/{name}" if name else "…"
    return text


def shareable(value: Any) -> Any:
    """`value` (JSON-like) with every string made shareable."""
    if isinstance(value, str):
        return shareable_text(value)
    if isinstance(value, list | tuple):
        return [shareable(item) for item in value]
    if isinstance(value, dict):
        return {key: shareable(item) for key, item in value.items()}
    return value


def hub_id_or_none(value: str | None) -> str | None:
    """`value` when it names a Hub repository (`owner/name`), else None (a local path, 'embedded', …)."""
    if value and looks_like_hub_id(value):
        return value
    return None
