"""Stable content hashes: the identity of every record and cache entry.

Ids must not change between Python versions or runs, so they hash canonical JSON
(sorted keys, no whitespace) with SHA-256, never Python's randomised `hash()`.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any

# Bump when the recipe of any key below changes, so old caches are not mistaken for new ones.
HASH_VERSION = "1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def content_hash(*parts: Any, length: int = 16) -> str:
    digest = hashlib.sha256(_hashed_json(parts).encode("utf-8")).hexdigest()
    return digest[:length]


_HEAD = f"[{encode_basestring(HASH_VERSION)}"


def _hashed_json(parts: tuple[Any, ...]) -> str:
    """`canonical_json([HASH_VERSION, *parts])`, built directly when every part is a string or an int
    (every record id: ~2.5× faster, and ids are hashed for every item of every rerun). The same
    bytes, so ids never change: `encode_basestring` is what `json.dumps(..., ensure_ascii=False)`
    uses for a string, and an int is its `repr` in both."""
    pieces = [_HEAD]
    for part in parts:
        kind = type(part)
        if kind is str:
            pieces.append(encode_basestring(part))
        elif kind is int:
            pieces.append(int.__repr__(part))
        else:
            return canonical_json([HASH_VERSION, *parts])
    return ",".join(pieces) + "]"


def normalize_text(text: str) -> str:
    """Whitespace-normalised text: the form used to compare and identify personas."""
    return " ".join(text.split())
