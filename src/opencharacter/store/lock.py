"""One command at a time per run directory: an exclusive OS lock on `RUN/run.lock` (`filelock`).

Two commands on one run would pay every call twice and over-cover pairs. The lock is an OS lock on
an open file (flock on Unix, msvcrt on Windows, through the portable `filelock`), so it dies with its
process: `kill -9` never leaves a stale lock behind. The file also says who holds it (pid, command,
since when), for the error the second command prints. Within one process the lock is re-entrant
(`run` holds it across profiles, synthesis, filters and exports, whose own sessions take it again).

The lock file is never opened through a symbolic link: a link planted at `RUN/run.lock` (a shared
or downloaded run directory) would otherwise have the holder's JSON written into whatever file it
points at. A symlinked lock path is refused with one line; where the OS has `O_NOFOLLOW`, every open
of the file also refuses links, so one swapped in after the check fails as well.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from opencharacter.errors import ConfigError

LOCK_FILE = "run.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_HOLDER_BYTES = 4096
_held: dict[Path, tuple[Any, int]] = {}


def _describe(text: str) -> str:
    try:
        holder: dict[str, Any] = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["since"])))
        return f"pid {holder['pid']} (opencharacter {holder['command']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _symlink_refusal(path: Path) -> ConfigError:
    return ConfigError(f"{path} is a symbolic link; refusing to lock through it (remove it and run again)")


def _read_holder(path: Path) -> str:
    """What the holder wrote, read without following links or blocking on a planted FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return ""
    try:
        return os.read(fd, _HOLDER_BYTES).decode("utf-8", "replace")
    except OSError:  # e.g. Windows, where the holder's byte-range lock forbids reading
        return ""
    finally:
        os.close(fd)


def _write_holder(path: Path, command: str) -> None:
    argv = " ".join(["opencharacter", *sys.argv[1:]])[:300]
    record = json.dumps({"pid": os.getpid(), "command": command, "argv": argv, "since": time.time()})
    try:
        fd = os.open(path, os.O_WRONLY | _NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_refusal(path) from None
        return  # the description is a courtesy; the lock itself is held
    try:
        os.ftruncate(fd, 0)
        os.write(fd, record.encode())
    except OSError:
        pass  # e.g. Windows, where the locked byte range cannot be rewritten
    finally:
        os.close(fd)


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
            lock, depth = _held[key]
            _held[key] = (lock, depth + 1)
            self._key = key
            return self
        path = key / LOCK_FILE
        shown = self.run_dir / LOCK_FILE
        if path.is_symlink():
            raise _symlink_refusal(shown)
        from filelock import FileLock, Timeout

        # thread_local=False: a command may take the lock on one thread and release it on another.
        lock = FileLock(str(path), timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            holder = _describe(_read_holder(path))
            raise ConfigError(
                f"{self.run_dir} is in use by {holder}: wait for it to finish, or use another --out"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP or path.is_symlink():
                raise _symlink_refusal(shown) from None
            raise ConfigError(f"{shown}: cannot open the run lock ({exc.strerror or exc})") from None
        try:
            _write_holder(path, self.command)
        except ConfigError:
            lock.release()
            raise
        _held[key] = (lock, 1)
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        lock, depth = _held[self._key]
        if depth > 1:
            _held[self._key] = (lock, depth - 1)
        else:
            del _held[self._key]
            lock.release()
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
