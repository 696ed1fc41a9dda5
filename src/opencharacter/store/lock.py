"""One command at a time per run directory: an exclusive `flock` on `RUN/run.lock`.

Two commands on one run would pay every call twice and over-cover pairs. The lock is an OS lock on
an open file, so it dies with its process: `kill -9` never leaves a stale lock behind. The file
also says who holds it (pid, command, since when), for the error the second command prints.
Within one process the lock is re-entrant (`run` holds it across profiles, synthesis, filters
and exports, whose own sessions take it again).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from opencharacter.errors import ConfigError

LOCK_FILE = "run.lock"
_held: dict[Path, tuple[IO[str], int]] = {}


def _describe(text: str) -> str:
    try:
        holder: dict[str, Any] = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["since"])))
        return f"pid {holder['pid']} (opencharacter {holder['command']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """`with RunLock(run_dir, "synthesize"):` — raises ConfigError (exit 2) when another process holds it."""

    def __init__(self, run_dir: str | Path, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.command = command
        self._key: Path | None = None

    def acquire(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir} exists and is not a directory")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.run_dir}: cannot create the run directory ({exc.strerror})") from None
        key = self.run_dir.resolve()
        if key in _held:
            stream, depth = _held[key]
            _held[key] = (stream, depth + 1)
            self._key = key
            return self
        stream = open(key / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = _describe(stream.read())
            stream.close()
            raise ConfigError(
                f"{self.run_dir} is in use by {holder}: wait for it to finish, or use another --out"
            ) from None
        stream.seek(0)
        stream.truncate()
        argv = " ".join(["opencharacter", *sys.argv[1:]])[:300]
        stream.write(json.dumps({"pid": os.getpid(), "command": self.command, "argv": argv, "since": time.time()}))
        stream.flush()
        _held[key] = (stream, 1)
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        stream, depth = _held[self._key]
        if depth > 1:
            _held[self._key] = (stream, depth - 1)
        else:
            del _held[self._key]
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
            stream.close()
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
