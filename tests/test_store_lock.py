"""The run lock: portable (filelock, no fcntl at import), re-entrant in a process, never through a symlink."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from opencharacter.errors import ConfigError
from opencharacter.store.lock import LOCK_FILE, RunLock


def test_the_lock_module_imports_without_fcntl():
    code = "import sys; sys.modules['fcntl'] = None; import opencharacter.store.lock; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    run = tmp_path / "run"
    with RunLock(run, "run"), RunLock(run, "profiles"):
        holder = (run / LOCK_FILE).read_text()
        assert f'"pid": {os.getpid()}' in holder and '"command": "run"' in holder
        probe = f"from opencharacter.store.lock import RunLock; RunLock({str(run)!r}, 'export').acquire()"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and f"in use by pid {os.getpid()} (opencharacter run, since" in done.stderr
        assert (run / LOCK_FILE).read_text() == holder  # the loser did not touch the holder's record
    with RunLock(run, "export"):  # released: free again
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ConfigError, match=r"run.lock is a symbolic link; refusing to lock through it"):
        RunLock(run, "profiles").acquire()
    assert victim.read_text() == "precious\n"
    dangling = tmp_path / "run2"
    dangling.mkdir()
    (dangling / LOCK_FILE).symlink_to(tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match="symbolic link"):
        RunLock(dangling, "profiles").acquire()
    assert not (tmp_path / "nothing-here").exists()
