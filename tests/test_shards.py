"""Shard stores and `opencharacter merge`: split by id, run apart, merge into the files of one local run."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import pytest

from opencharacter.config import BackendConfig, ProfilesConfig
from opencharacter.engine import run_stage
from opencharacter.errors import ConfigError
from opencharacter.executors.shards import (
    ShardsIncomplete,
    ShardSpec,
    claim_settings,
    mark_finished,
    merge_shards,
    open_shard,
    shard_dir,
    shard_of,
)
from opencharacter.pipeline import RunSession
from opencharacter.records import Character, Failure, Profile
from opencharacter.sources import load_personas
from opencharacter.stages import profiles as profile_stage
from opencharacter.store import RunStore
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--quiet")
PERSONAS = 12
FILES = ("characters.jsonl", "dialogues.jsonl", "failures.jsonl")


@pytest.fixture
def personas(personas_file):
    return load_personas(personas_file, limit=PERSONAS)[0]


def make_shard(tmp_path, run_cli, personas, run, spec, *extra, finish=True, settings="s1"):
    """What `--shard i/N` does, through the library: all items built (so sort keys are global), this
    shard's run into its shard store. Returns how many items the shard held."""
    options = dict(zip(extra[::2], extra[1::2], strict=True))
    backend = BackendConfig(backend="fake", model=options.get("--model", "embedded"), options=options.get("opts", {}))
    open_shard(run, spec).close()
    session = RunSession(shard_dir(run, spec), backend, "profiles", show_progress=False)
    items = [item for item in profile_stage.profile_items(personas) if spec.holds(item.id)]
    config = ProfilesConfig()
    work = profile_stage.profile_worker(session.engine, config.sampling, config.max_attempts)

    async def steps():
        try:
            await run_stage("profiles", items, work, engine=session.engine, max_attempts=config.max_attempts)
        finally:
            await session.close()

    asyncio.run(steps())
    store = RunStore(shard_dir(run, spec))
    claim_settings(store, {"profiles": {"prompt": settings}})
    if finish:
        mark_finished(store)
    store.close()
    return len(items)


def snapshot(run) -> dict[str, list]:
    with sqlite3.connect(run / "store.sqlite") as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("calls", "records", "failures", "sessions", "meta")
        }


def files(run) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in FILES}


@pytest.fixture
def local_run(tmp_path, run_cli, personas_file):
    run = tmp_path / "local"
    code, _, err = run_cli("profiles", "--personas", personas_file, "--limit", PERSONAS, "--out", run, *FAKE)
    assert code == 0, err
    return run


def test_shard_of_is_stable_even_and_in_range():
    # Fixed expectations: the split must not change between Python versions, runs or machines.
    assert [shard_of(f"item-{i}", 4) for i in range(8)] == [shard_of(f"item-{i}", 4) for i in range(8)]
    assert shard_of("abc", 7) == int.from_bytes(bytes.fromhex("ba7816bf8f01cfea"), "big") % 7
    counts = Counter(shard_of(f"id{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900
    assert shard_of("anything", 1) == 0


@pytest.mark.parametrize("text", ["2/2", "1/0", "a/b", "1", "-1/2"])
def test_a_bad_shard_spec_is_one_clear_error(text):
    with pytest.raises(ConfigError, match="shard"):
        ShardSpec.parse(text)
    assert ShardSpec.parse(" 3 / 4 ") == ShardSpec(3, 4) and ShardSpec(3, 4).name == "3-of-4"


def test_merged_shards_equal_the_local_run_and_merging_twice_changes_nothing(tmp_path, run_cli, personas, local_run):
    run = tmp_path / "sharded"
    sizes = [make_shard(tmp_path, run_cli, personas, run, ShardSpec(i, 3)) for i in range(3)]
    assert sum(sizes) == PERSONAS and all(sizes)  # every persona in exactly one shard
    report = merge_shards(run, strict=True)
    assert report.shards == ["0/3", "1/3", "2/3"] and report.records == PERSONAS and report.calls == PERSONAS
    assert report.sessions == 3 and not report.missing and not report.unfinished
    assert files(run) == files(local_run)
    before, written = snapshot(run), files(run)
    again = merge_shards(run, strict=True)
    assert (again.records, again.calls, again.failures, again.sessions) == (0, 0, 0, 0)
    assert snapshot(run) == before and files(run) == written
    card = (run / "README.md").read_text()
    assert f"| characters.jsonl | {PERSONAS} |" in card and card.count("| profiles |") == 3


def test_merge_after_partial_shards_then_the_rest(tmp_path, run_cli, personas, local_run):
    run = tmp_path / "sharded"
    first = make_shard(tmp_path, run_cli, personas, run, ShardSpec(0, 2))
    with pytest.raises(ShardsIncomplete) as missing:
        merge_shards(run, strict=True)
    assert missing.value.missing == ["1/2"] and missing.value.exit_code == 3
    assert len(read_jsonl(run / "characters.jsonl")) == first  # the partial result is written
    make_shard(tmp_path, run_cli, personas, run, ShardSpec(1, 2), finish=False)
    with pytest.raises(ShardsIncomplete) as unfinished:
        merge_shards(run, strict=True)
    assert unfinished.value.unfinished == ["1/2"] and not unfinished.value.missing
    store = RunStore(shard_dir(run, ShardSpec(1, 2)))
    mark_finished(store)
    store.close()
    merge_shards(run, strict=True)
    assert files(run) == files(local_run)


def test_a_shard_of_another_teacher_or_other_settings_is_refused_untouched(tmp_path, run_cli, personas):
    run = tmp_path / "sharded"
    make_shard(tmp_path, run_cli, personas, run, ShardSpec(0, 2))
    merge_shards(run)
    before = snapshot(run)
    make_shard(tmp_path, run_cli, personas, run, ShardSpec(1, 2), "--model", "other")
    with pytest.raises(ConfigError, match="made by fake:other, not fake:embedded"):
        merge_shards(run)
    assert snapshot(run) == before
    other = tmp_path / "settings"
    make_shard(tmp_path, run_cli, personas, other, ShardSpec(0, 2), settings="s1")
    make_shard(tmp_path, run_cli, personas, other, ShardSpec(1, 2), settings="s2")
    with pytest.raises(ConfigError, match="holds profiles made with other settings than this run"):
        merge_shards(other)
    assert not (other / "characters.jsonl").exists()  # checked before anything was copied


def test_claim_settings_refuses_a_second_configuration(tmp_path):
    store = RunStore(tmp_path / "run")
    cold = {"prompt": "generate@v1", "sampling": {"temperature": 0.2}}
    claim_settings(store, {"dialogues:generate": cold})
    claim_settings(store, {"dialogues:generate": dict(cold), "profiles": {"prompt": "profile@v1"}})  # same, + new
    with pytest.raises(ConfigError, match="holds dialogues:generate made with other settings"):
        claim_settings(store, {"dialogues:generate": {**cold, "sampling": {"temperature": 0.9}}})
    store.close()


def test_failures_merge_only_where_no_record_exists_and_never_rewind(tmp_path, run_cli, personas):
    run = tmp_path / "sharded"
    spec = ShardSpec(0, 2)
    failed = make_shard(tmp_path, run_cli, personas, run, spec, "opts", {"invalid_json_first": 5})
    ids = [f["item_id"] for f in read_jsonl(shard_dir(run, spec) / "failures.jsonl")]
    assert len(ids) == failed
    # The run store already made the first item, and got further than the shard on the second.
    store = RunStore(run)
    profile = Profile(
        name="A", age=30, gender="g", race="r", birth_place="b", appearance="a", general_experience="e", personality="p"
    )
    made = Character(
        character_id=ids[0], persona="p", character=profile.render(), profile=profile, model="m", prompt_version="v"
    )
    store.put_record("profiles", ids[0], "000", made)
    store.put_failure(Failure(stage="profiles", item_id=ids[1], reason="later try", attempts=6))
    store.close()
    report = merge_shards(run)
    assert report.failures == failed - 2
    merged = {f["item_id"]: f for f in read_jsonl(run / "failures.jsonl")}
    assert ids[0] not in merged and merged[ids[1]]["reason"] == "later try" and len(merged) == failed - 1


def test_merge_command_exit_codes(tmp_path, run_cli, personas, local_run):
    run = tmp_path / "sharded"
    code, _, err = run_cli("merge", "--run", run)
    assert code == 2 and "holds no shard stores" in err
    make_shard(tmp_path, run_cli, personas, run, ShardSpec(1, 2))
    code, _, err = run_cli("merge", "--run", run)
    assert code == 3 and "shards not started: 0/2" in err and "merged shards 1/2" in err
    make_shard(tmp_path, run_cli, personas, run, ShardSpec(0, 2))
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0, err
    assert files(run) == files(local_run)
