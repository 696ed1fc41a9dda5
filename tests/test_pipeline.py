"""The pipeline through the CLI on the fake backend: stages, pairing, resume, failures, card, exports."""

from __future__ import annotations

import json

import pytest

from opencharacter.sources.bundled import sample_path
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--quiet")


@pytest.fixture
def made_run(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    code, _, err = run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 8, *FAKE)
    assert code == 0, err
    code, _, err = run_cli(
        "synthesize",
        "--run",
        run,
        "--instructions",
        sample_path("instructions.jsonl"),
        "--limit",
        6,
        "--strategy",
        "generate",
        "--strategy",
        "rewrite",
        "--per-instruction",
        3,
        *FAKE,
    )
    assert code == 0, err
    return run


def test_profiles_have_the_released_shape(made_run):
    characters = read_jsonl(made_run / "characters.jsonl")
    assert len(characters) == 8
    first = characters[0]
    assert set(first) == {"character_id", "persona", "character", "profile", "model", "prompt_version"}
    assert first["character"].startswith(f"Name: {first['profile']['name']}\nAge: {first['profile']['age']}\n")
    assert first["prompt_version"] == "profile@v1"


def test_dialogues_pair_distinct_characters_and_keep_user_turns(made_run):
    dialogues = read_jsonl(made_run / "dialogues.jsonl")
    instructions = [json.loads(line) for line in sample_path("instructions.jsonl").read_text().splitlines()[:6]]
    assert len(dialogues) == 6 * 3 * 2
    by_question: dict[tuple[str, str], set[str]] = {}
    for d in dialogues:
        by_question.setdefault((d["question_id"], d["strategy"]), set()).add(d["character_id"])
        assert d["messages"][0]["role"] == "system"
        assert d["character_answer"] == d["messages"][-1]["content"]
        assert d["system_prompt_version"] == "character_system@v1"
    assert all(len(chars) == 3 for chars in by_question.values())
    # R and G use the same characters for the same instruction (pairing is per instruction).
    questions = {q for q, _ in by_question}
    assert all(by_question[(q, "rewrite")] == by_question[(q, "generate")] for q in questions)
    # User turns are byte-identical to the source, turn count and order preserved, in both strategies.
    sources = {tuple(i["conversations"][0::2]) for i in instructions}
    for d in dialogues:
        users = tuple(m["content"] for m in d["messages"] if m["role"] == "user")
        assert users in sources
        roles = [m["role"] for m in d["messages"][1:]]
        assert roles == ["user", "assistant"] * len(users)
    multi = [d for d in dialogues if len(d["messages"]) > 3 and d["strategy"] == "generate"]
    assert multi, "the sample slice includes multi-turn sessions"


def test_pairing_is_seeded_and_reproducible(tmp_path, run_cli, made_run, personas_file):
    other = tmp_path / "other"
    assert run_cli("profiles", "--personas", personas_file, "--out", other, "--limit", 8, *FAKE)[0] == 0
    args = ("synthesize", "--instructions", sample_path("instructions.jsonl"), "--limit", 6, *FAKE)
    assert run_cli(*args, "--run", other, "--strategy", "generate", "--strategy", "rewrite")[0] == 0
    assert (other / "dialogues.jsonl").read_text() == (made_run / "dialogues.jsonl").read_text()
    reseeded = tmp_path / "reseeded"
    assert run_cli("profiles", "--personas", personas_file, "--out", reseeded, "--limit", 8, *FAKE)[0] == 0
    assert run_cli(*args, "--run", reseeded, "--seed", 7)[0] == 0
    pairs = lambda run: {(d["question_id"], d["character_id"]) for d in read_jsonl(run / "dialogues.jsonl")}  # noqa: E731
    assert pairs(reseeded) != {p for p in pairs(made_run)}


def test_rerun_is_a_no_op_with_identical_files(made_run, run_cli, personas_file):
    before = {p.name: p.read_bytes() for p in made_run.glob("*.jsonl")}
    code, _, err = run_cli(
        "synthesize",
        "--run",
        made_run,
        "--instructions",
        sample_path("instructions.jsonl"),
        "--limit",
        6,
        "--strategy",
        "generate",
        "--strategy",
        "rewrite",
        "--per-instruction",
        3,
        *FAKE,
    )
    assert code == 0
    assert "0 new" in err
    assert {p.name: p.read_bytes() for p in made_run.glob("*.jsonl")} == before


def test_failures_are_recorded_then_retried_on_request(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    config = tmp_path / "faulty.yaml"
    config.write_text("backend:\n  backend: fake\n  options:\n    invalid_json_first: 5\n", encoding="utf-8")
    code, _, err = run_cli(
        "profiles", "--personas", personas_file, "--out", run, "--limit", 3, "--config", config, "-q"
    )
    # Files and summary first, then exit 3 with the commonest reasons: a script sees the run is incomplete.
    assert code == 3, err
    assert "commonest failure reasons" in err and "3 × profile is not valid JSON" in err
    assert err.strip().endswith("rerun with --retry-failed to try them again")
    failures = read_jsonl(run / "failures.jsonl")
    assert len(failures) == 3 and all(f["attempts"] == 3 and f["stage"] == "profiles" for f in failures)
    assert "not valid JSON" in failures[0]["reason"] and failures[0]["raw"]
    assert read_jsonl(run / "characters.jsonl") == []
    # Without --retry-failed a rerun leaves them alone (and still exits 3); with it, attempts continue.
    code, _, err = run_cli(
        "profiles", "--personas", personas_file, "--out", run, "--limit", 3, "--config", config, "-q"
    )
    assert code == 3 and "3 of 3 items failed" in err
    assert len(read_jsonl(run / "failures.jsonl")) == 3
    config.write_text("backend:\n  backend: fake\n", encoding="utf-8")
    code, _, _ = run_cli(
        "profiles",
        "--personas",
        personas_file,
        "--out",
        run,
        "--limit",
        3,
        "--config",
        config,
        "-q",
        "--retry-failed",
    )
    assert code == 0
    assert read_jsonl(run / "failures.jsonl") == [] and len(read_jsonl(run / "characters.jsonl")) == 3


def test_dataset_card_reports_counts_models_prompts_and_usage(made_run):
    card = (made_run / "README.md").read_text()
    assert "| dialogues.jsonl | 36 |" in card and "| characters.jsonl | 8 |" in card
    assert "generate 18, rewrite 18" in card
    assert "fake:embedded" in card and "rewrite@v2" in card and "character_system@v1" in card
    assert "| profiles |" in card and "| synthesize |" in card and "completion tokens" in card


def test_exports_load_in_the_ecosystem(made_run, run_cli):
    import datasets

    code, out, _ = run_cli(
        "export",
        "--run",
        made_run,
        "--format",
        "sharegpt",
        "--format",
        "alpaca",
        "--format",
        "messages",
        "--format",
        "parquet",
    )
    assert code == 0 and "wrote 36 dialogues" in out
    exports = made_run / "exports"
    share = read_jsonl(exports / "sharegpt.jsonl")[0]
    assert share["conversations"][0]["from"] == "system" and share["conversations"][1]["from"] == "human"
    alpaca = read_jsonl(exports / "alpaca.jsonl")
    multi = next(a for a in alpaca if a["history"])
    assert multi["system"] and multi["output"] and len(multi["history"][0]) == 2
    table = datasets.load_dataset("parquet", data_files=str(exports / "dialogues.parquet"), split="train")
    assert table.num_rows == 36 and "character_answer" in table.column_names
    run_table = datasets.load_dataset("json", data_files=str(made_run / "dialogues.jsonl"), split="train")
    assert run_table.num_rows == 36 and run_table[0]["messages"][0]["role"] == "system"
    messages = datasets.load_dataset("json", data_files=str(exports / "messages.jsonl"), split="train")
    assert set(messages[0]["messages"][1]) == {"role", "content"}


def test_run_command_from_yaml_with_flag_precedence(tmp_path, run_cli, personas_file):
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
run: {tmp_path / "from-yaml"}
backend: {{backend: transformers, model: embedded}}
personas: {{path: {personas_file}, limit: 4}}
instructions:
  - {{path: {sample_path("instructions.jsonl")}, limit: 3, strategies: [generate, rewrite]}}
synthesis: {{per_instruction: 2}}
export: [messages]
""",
        encoding="utf-8",
    )
    # --backend on the command line wins over the YAML's transformers.
    code, _, err = run_cli("run", config, "--backend", "fake", "--run", tmp_path / "flagged", "-q")
    assert code == 0, err
    assert not (tmp_path / "from-yaml").exists()
    dialogues = read_jsonl(tmp_path / "flagged" / "dialogues.jsonl")
    assert len(dialogues) == 3 * 2 * 2 and dialogues[0]["model"] == "fake:embedded"
    assert len(read_jsonl(tmp_path / "flagged" / "exports" / "messages.jsonl")) == 12


def test_a_run_directory_keeps_one_teacher(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 2, *FAKE)[0] == 0
    before = (run / "characters.jsonl").read_bytes()
    code, _, err = run_cli(
        "profiles", "--personas", personas_file, "--out", run, "--limit", 4, "--backend", "fake", "--model", "other"
    )
    assert code == 2 and "holds data made by fake:embedded, not fake:other" in err and "new --out" in err
    assert (run / "characters.jsonl").read_bytes() == before  # nothing was mixed in


def test_a_run_directory_keeps_one_way_of_decoding(tmp_path, run_cli, personas_file, monkeypatch):
    """Same model, another decoding (the local backend's repetition penalty stopped counting the
    prompt): finished records were made the old way, so adding new ones would mix the two."""
    from opencharacter.backends.fake import FakeBackend

    run = tmp_path / "run"
    assert run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 2, *FAKE)[0] == 0
    before = (run / "characters.jsonl").read_bytes()
    monkeypatch.setattr(FakeBackend, "decoding", "penalty-on-generated")
    code, _, err = run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 4, *FAKE)
    assert code == 2 and "decoded another way (an older version, now penalty-on-generated)" in err, err
    assert (run / "characters.jsonl").read_bytes() == before
    # A new run directory records the decoding, and resumes with it.
    fresh = tmp_path / "fresh"
    assert run_cli("profiles", "--personas", personas_file, "--out", fresh, "--limit", 2, *FAKE)[0] == 0
    assert run_cli("profiles", "--personas", personas_file, "--out", fresh, "--limit", 4, *FAKE)[0] == 0
