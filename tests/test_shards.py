"""Shards without Ray: `--shard i/N` runs one shard into RUN/shards/, `opencharacter merge` folds them into
the files of one local run (idempotently), and shards made differently are refused."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from opencharacter.errors import ConfigError
from opencharacter.executors.shards import (
    ShardsIncomplete,
    ShardSpec,
    claim_settings,
    mark_finished,
    open_shard,
    shard_dir,
    shard_of,
)
from opencharacter.pipeline.shards import merge_shards
from opencharacter.records import Character, Failure, Profile
from opencharacter.sources import load_personas
from opencharacter.sources.bundled import sample_path
from opencharacter.store import RunStore
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--quiet")
PERSONAS = 12
FILES = ("characters.jsonl", "dialogues.jsonl", "failures.jsonl")
SYNTHESIS = ("--limit", 5, "--strategy", "generate", "--strategy", "rewrite", "--per-instruction", 2)


def profiles(run_cli, personas_file, run, *extra):
    return run_cli("profiles", "--personas", personas_file, "--limit", PERSONAS, "--out", run, *FAKE, *extra)


def synthesize(run_cli, run, *extra):
    return run_cli(
        "synthesize", "--run", run, "--instructions", sample_path("instructions.jsonl"), *SYNTHESIS, *FAKE, *extra
    )


def make_shard(run_cli, personas_file, run, spec, *extra, expect=0):
    code, _, err = profiles(run_cli, personas_file, run, "--shard", str(spec), *extra)
    assert code == expect, err


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
    code, _, err = profiles(run_cli, personas_file, run)
    assert code == 0, err
    return run


def test_shard_of_is_stable_even_and_in_range():
    # SHA-256 of the id, first 8 bytes big-endian: the split never changes between runs or machines.
    assert shard_of("abc", 7) == int.from_bytes(bytes.fromhex("ba7816bf8f01cfea"), "big") % 7
    counts = Counter(shard_of(f"id{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900
    assert shard_of("anything", 1) == 0


@pytest.mark.parametrize("text", ["2/2", "1/0", "a/b", "1", "-1/2"])
def test_a_bad_shard_spec_is_one_clear_error(text, run_cli, tmp_path, personas_file):
    with pytest.raises(ConfigError, match="shard"):
        ShardSpec.parse(text)
    assert ShardSpec.parse(" 3 / 4 ") == ShardSpec(3, 4) and ShardSpec(3, 4).name == "3-of-4"
    code, _, err = profiles(run_cli, personas_file, tmp_path / "run", "--shard", text)
    assert code == 2 and "shard" in err


def test_shards_then_merge_equal_the_local_run_and_merging_twice_changes_nothing(
    tmp_path, run_cli, personas_file, local_run
):
    run = tmp_path / "sharded"
    for index in range(3):
        make_shard(run_cli, personas_file, run, ShardSpec(index, 3))
    ids = [p.character_id for p in load_personas(personas_file, limit=PERSONAS)[0]]
    for index in range(3):  # each shard made exactly its own personas
        made = read_jsonl(shard_dir(run, ShardSpec(index, 3)) / "characters.jsonl")
        assert made and {c["character_id"] for c in made} == {i for i in ids if shard_of(i, 3) == index}
    report = merge_shards(run, strict=True)
    assert report.shards == ["0/3", "1/3", "2/3"] and report.records == PERSONAS and report.calls == PERSONAS
    assert report.sessions == 3 and not report.missing and not report.unfinished
    assert files(run) == files(local_run)
    before, written = snapshot(run), files(run)
    again = merge_shards(run, strict=True)
    assert (again.records, again.calls, again.failures, again.sessions) == (0, 0, 0, 0)
    assert snapshot(run) == before and files(run) == written
    card = (run / "README.md").read_text()
    assert f"| characters.jsonl | {PERSONAS} |" in card and card.count("| profiles --shard ") == 3


def test_profiles_and_synthesize_in_shards_equal_the_local_run(tmp_path, run_cli, personas_file, local_run):
    code, _, err = synthesize(run_cli, local_run)
    assert code == 0, err
    run = tmp_path / "sharded"
    for index in range(2):
        make_shard(run_cli, personas_file, run, ShardSpec(index, 2))
    code, _, err = synthesize(run_cli, run, "--shard", "0/2")
    assert code == 2 and "merge --run" in err  # dialogues pair with every shard's characters: merge first
    assert run_cli("merge", "--run", run)[0] == 0
    for index in (1, 0):
        code, _, err = synthesize(run_cli, run, "--shard", f"{index}/2")
        assert code == 0, err
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0, err
    assert files(run) == files(local_run) and len(read_jsonl(run / "dialogues.jsonl")) == 5 * 2 * 2
    code, _, err = synthesize(run_cli, run, "--shard", "0/2", "--executor", "ray")
    assert code == 2 and "--shard runs one shard in this process" in err


def test_merge_after_partial_shards_then_the_rest(tmp_path, run_cli, personas_file, local_run):
    run = tmp_path / "sharded"
    make_shard(run_cli, personas_file, run, ShardSpec(0, 2))
    with pytest.raises(ShardsIncomplete) as missing:
        merge_shards(run, strict=True)
    assert missing.value.missing == ["1/2"] and missing.value.exit_code == 3
    partial = read_jsonl(run / "characters.jsonl")  # the partial result is written
    assert 0 < len(partial) < PERSONAS
    open_shard(run, ShardSpec(1, 2)).close()  # shard 1 has started and not finished (or was killed)
    with pytest.raises(ShardsIncomplete) as unfinished:
        merge_shards(run, strict=True)
    assert unfinished.value.unfinished == ["1/2"] and not unfinished.value.missing
    make_shard(run_cli, personas_file, run, ShardSpec(1, 2))
    merge_shards(run, strict=True)
    assert files(run) == files(local_run)


def test_a_shard_of_another_teacher_or_other_settings_is_refused_untouched(tmp_path, run_cli, personas_file):
    run = tmp_path / "sharded"
    make_shard(run_cli, personas_file, run, ShardSpec(0, 2))
    merge_shards(run)
    before = snapshot(run)
    make_shard(run_cli, personas_file, run, ShardSpec(1, 2), "--model", "other", expect=2)  # seeded: refused at once
    store = RunStore(shard_dir(run, ShardSpec(1, 2)))
    store.set_meta("teacher", "fake:other")  # as if it had been made before the run store existed
    store.close()
    with pytest.raises(ConfigError, match="made by fake:other, not fake:embedded"):
        merge_shards(run)
    assert snapshot(run) == before
    other = tmp_path / "settings"
    make_shard(run_cli, personas_file, other, ShardSpec(0, 2))
    make_shard(run_cli, personas_file, other, ShardSpec(1, 2), "--temperature", "0.2")
    with pytest.raises(
        ConfigError, match=r"holds profiles made with other settings \(.*temperature 0.7 → 0.2\): it cannot be merged"
    ):
        merge_shards(other)
    assert not (other / "characters.jsonl").exists()  # every shard is checked before anything is copied


def test_claim_settings_refuses_a_second_configuration(tmp_path):
    store = RunStore(tmp_path / "run")
    cold = {"prompt": "generate@v1", "sampling": {"temperature": 0.2}}
    claim_settings(store, {"dialogues:generate": cold})
    claim_settings(store, {"dialogues:generate": dict(cold), "profiles": {"prompt": "profile@v1"}})  # same, + new
    with pytest.raises(ConfigError, match="holds dialogues:generate made with other settings"):
        claim_settings(store, {"dialogues:generate": {**cold, "sampling": {"temperature": 0.9}}})
    store.close()


def test_failures_merge_only_where_no_record_exists_and_never_rewind(tmp_path, run_cli, personas_file):
    run = tmp_path / "sharded"
    faulty = tmp_path / "faulty.yaml"
    faulty.write_text("backend:\n  backend: fake\n  options:\n    invalid_json_first: 5\n", encoding="utf-8")
    spec = ShardSpec(0, 2)
    make_shard(run_cli, personas_file, run, spec, "--config", faulty, expect=3)  # every item failed: exit 3
    ids = [f["item_id"] for f in read_jsonl(shard_dir(run, spec) / "failures.jsonl")]
    assert len(ids) >= 3
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
    assert report.failures == len(ids) - 2
    merged = {f["item_id"]: f for f in read_jsonl(run / "failures.jsonl")}
    assert ids[0] not in merged and merged[ids[1]]["reason"] == "later try" and len(merged) == len(ids) - 1


def test_merge_command_exit_codes(tmp_path, run_cli, personas_file, local_run):
    run = tmp_path / "sharded"
    code, _, err = run_cli("merge", "--run", run)
    assert code == 2 and "holds no shard stores" in err
    make_shard(run_cli, personas_file, run, ShardSpec(1, 2))
    code, _, err = run_cli("merge", "--run", run)
    assert code == 3 and "shards not started: 0/2" in err and "merged shards 1/2" in err
    make_shard(run_cli, personas_file, run, ShardSpec(0, 2))
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0, err
    assert files(run) == files(local_run)
    store = RunStore(shard_dir(run, ShardSpec(0, 2)))
    mark_finished(store)  # finished stays finished
    assert store.get_meta("finished") is True
    store.close()
