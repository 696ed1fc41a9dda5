"""Atomic writes, and the umask read without changing it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from opencharacter import fileio


def test_reading_the_umask_never_changes_it(monkeypatch):
    """`os.umask` reads by setting: a thread creating a file meanwhile would get the wrong mode."""

    def refuse(*_):
        raise AssertionError("os.umask called")

    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", refuse)
        assert fileio.current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(previous)


def test_without_proc_a_child_process_reports_the_mask(monkeypatch):
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    previous = os.umask(0o007)
    try:
        monkeypatch.setattr("builtins.open", no_proc)
        monkeypatch.setattr(fileio, "_child_umask", None)
        assert fileio.current_umask() == 0o007
    finally:
        os.umask(previous)


def test_json_and_text_are_written_whole_or_not_at_all(tmp_path):
    path = fileio.write_json(tmp_path / "a" / "summary.json", {"x": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~fileio.current_umask()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), fileio.atomic_open(path) as stream:
        stream.write('{"half": ')
        raise Boom
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": 1}  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary left
    fileio.write_text(tmp_path / "card.md", "# card\n")
    assert (tmp_path / "card.md").read_text(encoding="utf-8") == "# card\n"
