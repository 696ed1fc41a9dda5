"""Atomic file writes: an output file is either the old one or the complete new one, never half-written."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


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


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask. Reading it means setting it, so set it back at once, under a lock."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_jsonl(path: str | Path, lines: Iterable[str]) -> int:
    count = 0
    with atomic_open(path) as stream:
        for line in lines:
            stream.write(line + "\n")
            count += 1
    return count
