"""The store and engine at scale: cheap cache keys, compiled-once templates, batched commits, paged
reads, streamed files that are not rewritten for nothing, and stores made by older versions."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from opencharacter.engine.engine import Engine
from opencharacter.engine.keys import request_json
from opencharacter.export import run_files
from opencharacter.hashing import canonical_json, content_hash
from opencharacter.prompts import _compiled, load_prompt
from opencharacter.records import ChatMessage, ChatRequest, Completion, Failure, Persona, Sampling
from opencharacter.stages.dialogues import rewrite_schema
from opencharacter.stages.profiles import build_request
from opencharacter.store import RunStore
from opencharacter.store import run_store as run_store_module
from opencharacter.store.migrations import MIGRATIONS


def requests() -> list[ChatRequest]:
    template = load_prompt("profile")
    persona = Persona(persona='A chess fan from Kyōto who says "{{ hi }}" — often.\u2028')
    return [
        build_request(persona, template, Sampling()),
        build_request(persona, template, Sampling(seed=7, temperature=0.0)),
        ChatRequest(
            messages=[ChatMessage(role="user", content="x\n\ty")],
            response_schema=rewrite_schema(2, 5),
            schema_name="rewritten_answers",
        ),
        ChatRequest(messages=[ChatMessage(role="system", content="s"), ChatMessage(role="user", content="日本")]),
    ]


def test_the_fast_cache_key_is_the_old_key_byte_for_byte(tmp_path):
    """Stores written before keep replaying: the key is still content_hash of the full dump."""
    from opencharacter.backends import build_backend
    from opencharacter.config import BackendConfig

    engine = Engine(build_backend(BackendConfig(backend="fake")), RunStore(tmp_path / "run"))
    for request in requests() * 2:  # the second pass is served from the memos
        assert request_json(request) == canonical_json(request.model_dump(mode="json"))
        for attempt in (0, 3):
            old = content_hash(
                "call", "p@v1", engine.backend.cache_identity, request.model_dump(mode="json"), attempt, length=32
            )
            assert engine.cache_key(request, "p@v1", attempt) == old


def test_a_schema_with_other_values_is_never_served_from_the_memo():
    first = ChatRequest(messages=[ChatMessage(role="user", content="q")], response_schema=rewrite_schema(2, 5))
    second = ChatRequest(messages=[ChatMessage(role="user", content="q")], response_schema=rewrite_schema(3, 5))
    assert request_json(first) != request_json(second)
    assert request_json(second) == canonical_json(second.model_dump(mode="json"))


def test_request_json_knows_every_field_of_a_request():
    """A field added to ChatRequest or ChatMessage must be added to request_json, or keys would ignore it."""
    assert set(ChatRequest.model_fields) == {"messages", "sampling", "response_schema", "schema_name"}
    assert set(ChatMessage.model_fields) == {"role", "content"}


def test_a_template_is_compiled_once_however_often_it_renders():
    template = load_prompt("generate")
    template.render(persona="p", character="c")
    misses = _compiled.cache_info().misses
    for index in range(20):
        template.render(persona=f"p{index}", character="c")
    assert _compiled.cache_info().misses == misses
    assert template.compiled is load_prompt("generate").compiled


def committed_calls(run) -> int:
    db = sqlite3.connect(run / "store.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        db.close()


def test_writes_are_committed_in_batches_on_time_and_when_the_loop_ends(tmp_path):
    run = tmp_path / "run"
    store = RunStore(run)
    seen: dict[str, int] = {}

    async def main() -> None:
        store.put_call("a", "p@v1", "m", Completion(text="one"))
        seen["at once"] = committed_calls(run)  # another process does not see it yet…
        assert store.get_call("a").text == "one"  # …but this one does
        await asyncio.sleep(run_store_module.COMMIT_SECONDS * 4)
        seen["after the interval"] = committed_calls(run)
        store.put_call("b", "p@v1", "m", Completion(text="two"))  # the loop ends before its timer

    asyncio.run(main())
    assert seen == {"at once": 0, "after the interval": 1}
    assert committed_calls(run) == 2
    store.close()


def test_a_full_batch_commits_at_once_and_a_caller_without_a_loop_commits_every_write(tmp_path, monkeypatch):
    monkeypatch.setattr(run_store_module, "COMMIT_ROWS", 3)
    monkeypatch.setattr(run_store_module, "COMMIT_SECONDS", 3600.0)
    run = tmp_path / "run"
    store = RunStore(run)
    seen = []

    async def main() -> None:
        for key in "abc":
            store.put_call(key, "p@v1", "m", Completion(text=key))
            seen.append(committed_calls(run))
        store.put_call("d", "p@v1", "m", Completion(text="d"))
        seen.append(committed_calls(run))

    asyncio.run(main())
    assert seen == [0, 0, 3, 3]
    assert committed_calls(run) == 4  # the loop ended: its open batch was committed
    store.put_call("e", "p@v1", "m", Completion(text="e"))  # no loop: nothing is left pending
    assert committed_calls(run) == 5
    other = RunStore(run)  # and so another store on the same file is never locked out
    other.put_call("f", "p@v1", "m", Completion(text="f"))
    other.close()
    store.close()


def test_calls_round_trip_compressed_with_their_usage(tmp_path):
    store = RunStore(tmp_path / "run")
    completion = Completion(text="ünïcode " * 500, finish_reason="length", prompt_tokens=12, completion_tokens=34)
    store.put_call("k", "profile@v1", "m", completion)
    store.put_call("k2", "profile@v1", "m", Completion(text="x", prompt_tokens=1, completion_tokens=2))
    assert store.get_call("k") == completion
    assert store.get_call("missing") is None
    assert store.usage_rows() == [("profile@v1", "m", 2, 13, 36)]
    stored = store._db.execute("SELECT completion FROM calls WHERE key = 'k'").fetchone()[0]
    assert isinstance(stored, bytes) and len(stored) < len(completion.text) / 10
    store.close()


def test_a_store_made_by_schema_v1_opens_replays_and_counts(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    db = sqlite3.connect(run / "store.sqlite")
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    old = Completion(text="old answer", prompt_tokens=5, completion_tokens=7)
    db.execute("INSERT INTO calls VALUES ('key', 'generate@v1', 'm', ?, 0)", (old.model_dump_json(),))
    db.execute("""INSERT INTO records VALUES ('dialogues', 'd1', '0', '{"strategy":"generate","source":"s"}')""")
    db.commit()
    db.close()
    store = RunStore(run)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.get_call("key") == old
    assert store.usage() == {"generate@v1 · m": {"calls": 1, "prompt_tokens": 5, "completion_tokens": 7}}
    assert list(store.record_lines("dialogues")) == ['{"strategy":"generate","source":"s"}']
    before = store.generation()
    store.put_failure(Failure(stage="dialogues", item_id="d2", reason="r", attempts=1))
    assert store.generation() > before
    store.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    run = tmp_path / "new"
    run.mkdir()
    db = sqlite3.connect(run / "store.sqlite")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    from opencharacter.errors import ConfigError

    with pytest.raises(ConfigError, match="newer than this opencharacter"):
        RunStore(run)


def test_records_and_failures_are_read_in_pages_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(run_store_module, "PAGE_ROWS", 3)
    store = RunStore(tmp_path / "run")
    for index in range(10):
        persona = Persona(persona=f"persona {index}")
        # Two records share each sort key: the id breaks the tie, across page boundaries too.
        store.put_record("profiles", f"id{index}", f"{index // 2:03d}", persona)
        store.put_failure(Failure(stage=f"s{index % 2}", item_id=f"f{index}", reason="r", attempts=1))
    lines = list(store.record_lines("profiles"))
    assert [json.loads(line)["persona"] for line in lines] == [f"persona {i}" for i in range(10)]
    assert [p.persona for p in store.records("profiles", Persona)] == [f"persona {i}" for i in range(10)]
    failures = store.failures()
    assert [(f.stage, f.item_id) for f in failures] == sorted((f"s{i % 2}", f"f{i}") for i in range(10))
    assert len(store.failures("s1")) == 5 and store.failure_counts() == {"s0": 5, "s1": 5}
    store.close()


def test_run_files_stream_the_stored_lines_and_are_rewritten_only_when_data_changed(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    store.put_record("profiles", "a", "0", Persona(persona="first"))
    writes: list[str] = []
    real = run_files.write_jsonl
    monkeypatch.setattr(run_files, "write_jsonl", lambda path, lines: writes.append(path.name) or real(path, lines))
    paths = run_files.write_run_files(store)
    assert paths["characters"].read_text(encoding="utf-8") == '{"persona":"first"}\n'
    assert len(writes) == 3

    run_files.write_run_files(store)  # nothing changed: nothing rewritten, the card is
    assert len(writes) == 3 and paths["card"].exists()

    store.put_record("profiles", "b", "1", Persona(persona="second"))
    run_files.write_run_files(store)
    assert len(writes) == 6
    assert paths["characters"].read_text(encoding="utf-8").count("\n") == 2

    paths["dialogues"].unlink()  # a file deleted (or edited) by hand is written again
    run_files.write_run_files(store)
    assert len(writes) == 9 and paths["dialogues"].exists()
    store.close()


def test_facets_are_counted_by_sqlite_and_recounted_when_data_changes(tmp_path):
    store = RunStore(tmp_path / "run")
    for index, (strategy, source) in enumerate([("generate", "a"), ("rewrite", "a"), ("rewrite", "b")]):
        store._write(
            "INSERT INTO records VALUES ('dialogues', ?, ?, ?)",
            (str(index), str(index), json.dumps({"strategy": strategy, "source": source})),
        )
    fields = ("strategy", "source")
    assert store.facets("dialogues", fields) == {"strategy": {"generate": 1, "rewrite": 2}, "source": {"a": 2, "b": 1}}
    store._write("DELETE FROM records WHERE id = '0'", ())
    assert store.facets("dialogues", fields) == {"strategy": {"rewrite": 2}, "source": {"a": 1, "b": 1}}
    assert store.facets("dialogues", ("source",)) == {"source": {"a": 1, "b": 1}}
    store.close()
