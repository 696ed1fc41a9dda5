"""Card text from strangers is data: terminal control sequences are removed before anyone prints it.

A card's name or greeting may hold ANSI/OSC escapes (`ESC ] 0 ; title BEL` retitles the terminal,
`ESC [ 2 J` clears it, OSC 8 plants links); printed raw, they act on the user's terminal. Cards
are cleaned once, when read, so every later print, prompt and export sees the clean text. Newlines
and tabs stay (descriptions are multi-line); a carriage return becomes a newline (it would let a
line overwrite what was printed before it).
"""

from __future__ import annotations

import re
from typing import Any

# ESC-introduced sequences: CSI (`ESC [` params final), OSC/DCS/SOS/PM/APC strings (ended by BEL
# or ST), and two-character escapes. Their C1 forms (U+009B CSI, U+009D OSC, ...) likewise.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI … final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC/DCS/… strings
    r"|\x1b[ -/]*[0-~]"  # other escapes (ESC c, ESC ( B, …)
)
# What is left of C0 and C1 after the sequences are gone, except tab and newline; DEL too.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """`text` without terminal escape sequences and control characters (tab and newline kept)."""
    if text.isprintable():  # the common case costs one scan
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def clean(value: Any) -> Any:
    """Every string in a decoded JSON value (keys included) passed through `strip_controls`."""
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, list):
        return [clean(item) for item in value]
    if isinstance(value, dict):
        return {strip_controls(key) if isinstance(key, str) else key: clean(item) for key, item in value.items()}
    return value
