"""Inputs counted right and rejected early: counts that add up, no traceback on odd bytes, lazy readers."""

from __future__ import annotations

import json

import pytest

from opencharacter.errors import ConfigError, InputError
from opencharacter.sources import iter_instructions, iter_personas, load_instructions, load_personas

GOOD = '{"persona": "A retired ferry captain who paints harbours."}'


def lines(tmp_path, name: str, *rows: str):
    path = tmp_path / name
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def test_skip_invalid_counts_every_line_once(tmp_path):
    path = lines(
        tmp_path,
        "p.jsonl",
        GOOD,
        '{"persona": ',  # malformed JSON
        '{"name": "no persona field"}',
        '{"persona": "   "}',  # empty after normalising
        '{"persona": "A judge in Lagos."}',
    )
    personas, report = load_personas(path, skip_invalid=True)
    assert len(personas) == report.kept == 2 and len(report.invalid) == 3 and report.read == 5
    assert report.summary() == f"{path}: 2 kept of 5 read, 0 exact duplicates dropped, 3 invalid skipped"
    assert [e.line for e in report.invalid] == [2, 3, 4]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_an_error_not_an_empty_run(tmp_path, content):
    for name, load in (("p.jsonl", load_personas), ("i.jsonl", load_instructions)):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(InputError, match="it is empty") as caught:
            load(path)
        assert str(caught.value).startswith(str(path))


def test_all_invalid_with_skip_invalid_is_an_error_too(tmp_path):
    path = lines(tmp_path, "p.jsonl", "{", '{"persona": 3}')
    with pytest.raises(InputError, match=r"no valid personas \(2 invalid skipped\)"):
        load_personas(path, skip_invalid=True)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_rejected_before_reading(tmp_path, limit):
    path = lines(tmp_path, "p.jsonl", GOOD)
    with pytest.raises(ConfigError, match="--limit must be a positive number"):
        load_personas(path, limit=limit)
    with pytest.raises(ConfigError, match="--limit must be a positive number"):
        iter_instructions(path, limit=limit)  # checked at the call, not at the first record


def test_deep_nesting_names_file_and_line(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    path = lines(tmp_path, "p.jsonl", GOOD, deep)
    with pytest.raises(InputError) as caught:
        load_personas(path)
    assert str(caught.value) == f"{path}:2: JSON nested too deeply to read"
    personas, report = load_personas(path, skip_invalid=True)
    assert len(personas) == 1 and report.read == 2
    array = tmp_path / "a.json"
    array.write_text(f'[{{"instruction": "Hi"}},\n{deep}]', encoding="utf-8")
    with pytest.raises(InputError, match=r"a.json:2: JSON nested too deeply"):
        load_instructions(array)


def test_lone_surrogate_escape_is_rejected_at_read_time(tmp_path, run_cli):
    path = lines(tmp_path, "p.jsonl", GOOD, '{"persona": "A sailor \\ud800 who sings."}')
    with pytest.raises(InputError) as caught:
        load_personas(path)
    assert str(caught.value).startswith(f"{path}:2: text holds a lone surrogate escape (\\ud800)")
    # A valid surrogate pair (an escaped emoji) is fine.
    ok = lines(tmp_path, "ok.jsonl", '{"persona": "A baker \\ud83c\\udf5e who sings."}')
    assert load_personas(ok)[0][0].persona == "A baker \U0001f35e who sings."
    # Instructions too, in JSON arrays as well as JSON Lines.
    array = tmp_path / "i.json"
    array.write_text('[{"instruction": "Fine"},\n {"instruction": "Bad \\udc00"}]', encoding="utf-8")
    with pytest.raises(InputError, match=r"i.json:2: text holds a lone surrogate escape \(\\udc00\)"):
        load_instructions(array)
    # Through the CLI: one line, and no run directory left behind.
    code, _, err = run_cli("profiles", "--personas", path, "--out", tmp_path / "run", "--backend", "fake")
    assert code == 2 and "lone surrogate" in err and not (tmp_path / "run").exists()


def test_missing_path_without_extension_is_not_a_hub_lookup(tmp_path, run_cli, monkeypatch):
    import datasets

    def no_network(*args, **kwargs):
        raise AssertionError("a mistyped path must not reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    missing = tmp_path / "personas_typo"
    code, _, err = run_cli("profiles", "--personas", missing, "--out", tmp_path / "run", "--backend", "fake")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {missing}: no such file or directory") and "--persona-format dataset" in err


def test_unreadable_file_is_one_clear_error(tmp_path, monkeypatch):
    from pathlib import Path

    path = lines(tmp_path, "p.jsonl", GOOD)
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(InputError, match="permission denied"):
        load_personas(path)


def test_readers_are_lazy_and_report_once_exhausted(tmp_path):
    path = lines(tmp_path, "i.jsonl", *(json.dumps({"instruction": f"Question {i}?"}) for i in range(5)), "{broken")
    instructions, report = iter_instructions(path, source_name="mine")
    assert report.read == 0  # nothing read yet
    first = next(instructions)
    assert first.source == "mine" and report.kept == 1
    assert [i.turns[0].content for i in [first, *list(_take(instructions, 4))]] == [f"Question {i}?" for i in range(5)]
    with pytest.raises(InputError, match=r"i.jsonl:6: malformed JSON"):  # reached only now
        next(instructions)
    # The same errors and counts as the list API.
    items, report = iter_instructions(path, skip_invalid=True)
    assert len(list(items)) == 5 and (report.kept, report.read, len(report.invalid)) == (5, 6, 1)
    _, listed_report = load_instructions(path, skip_invalid=True)
    assert (listed_report.kept, listed_report.read) == (report.kept, report.read)
    personas, persona_report = iter_personas(lines(tmp_path, "p.jsonl", GOOD, GOOD), limit=5)
    assert len(list(personas)) == 1 and persona_report.duplicates == 1 and persona_report.read == 2


def _take(iterator, count):
    for _ in range(count):
        yield next(iterator)


def test_streaming_keeps_memory_flat(tmp_path):
    """5k instructions stream without holding them: the generator's peak is far below the list's."""
    import tracemalloc

    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        for i in range(5_000):
            stream.write(json.dumps({"instruction": f"Question number {i}: what would you do?"}) + "\n")

    def peak(consume) -> int:
        tracemalloc.start()
        consume()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    streamed = peak(lambda: sum(1 for _ in iter_instructions(path)[0]))
    listed = peak(lambda: len(load_instructions(path)[0]))
    assert streamed < listed / 4, (streamed, listed)
