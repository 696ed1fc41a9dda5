"""Stable content hashes: the identity of every record and cache entry.

Ids must not change between Python versions or runs, so they hash canonical JSON
(sorted keys, no whitespace) with SHA-256, never Python's randomised `hash()`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Bump when the recipe of any key below changes, so old caches are not mistaken for new ones.
HASH_VERSION = "1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def content_hash(*parts: Any, length: int = 16) -> str:
    digest = hashlib.sha256(canonical_json([HASH_VERSION, *parts]).encode("utf-8")).hexdigest()
    return digest[:length]


def normalize_text(text: str) -> str:
    """Whitespace-normalised text: the form used to compare and identify personas."""
    return " ".join(text.split())
