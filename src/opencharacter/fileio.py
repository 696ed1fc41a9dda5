"""Atomic file writes: an output file is either the old one or the complete new one, never half-written.

Every JSON, JSONL and Markdown file the package writes goes through `atomic_open` (or the two
one-call helpers below it), so a killed command never leaves a truncated `summary.json` or card.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files (right for a temporary, wrong for an output people share): give the
        # file the mode a plain open() would, i.e. 0666 less the user's umask.
        os.fchmod(handle, 0o666 & ~current_umask())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """`path.write_text(text)`, atomically (UTF-8)."""
    with atomic_open(path) as stream:
        stream.write(text)
    return Path(path)


def write_json(path: str | Path, value: Any, *, indent: int | None = 2, **options: Any) -> Path:
    """`value` as JSON (a trailing newline), atomically; `options` go to `json.dumps` (`default`, …)."""
    return write_text(path, json.dumps(value, indent=indent, **options) + "\n")


_child_umask: int | None = None


def current_umask() -> int:
    """The process umask, read without changing it.

    `os.umask` can only read the mask by setting it, which races with every other thread creating
    files in that instant (they would get the temporary mask). Linux reports it in
    `/proc/self/status` (`Umask:`, since 4.7), read at every call (a program may change its mask);
    elsewhere a short-lived child process reports the mask it inherited, once per process.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    global _child_umask
    if _child_umask is None:
        _child_umask = _umask_of_a_child()
    return _child_umask


def _umask_of_a_child() -> int:
    import subprocess
    import sys

    try:
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.umask(0))"], capture_output=True, text=True, timeout=30
        )
        return int(child.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0o022  # the usual default, when neither way works


def write_jsonl(path: str | Path, lines: Iterable[str]) -> int:
    count = 0
    with atomic_open(path) as stream:
        for line in lines:
            stream.write(line + "\n")
            count += 1
    return count
