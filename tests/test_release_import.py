"""`opencharacter import --from opencharacter-release`: the paper's released files as a run directory.

The stand-in files are written here in the release's format (synthetic_character.jsonl: character_id,
persona, character; synthetic_dialogue.jsonl: character_id, question_id, question, character_answer).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_jsonl
from fake_hub import FakeHub
from release_files import PROFILE, character_id, write_release

from opencharacter.pipeline import release_import
from opencharacter.prompts.system_prompt import render_system_prompt
from opencharacter.sources.release_profiles import UNSPECIFIED, parse_profile_text
from opencharacter.store import RunStore

CLI = str(Path(sys.executable).with_name("opencharacter"))


def test_profile_text_is_parsed_leniently_and_kept_verbatim():
    parsed = parse_profile_text(PROFILE)
    profile = parsed.profile
    assert profile.name == "Amara Okafor" and profile.age == 34 and profile.birth_place == "Lagos, Nigeria"
    assert profile.general_experience.endswith("then a small map shop in Ibadan.")
    assert parsed.filled == [] and parsed.shortened == []
    markdown = parse_profile_text("**Name:** Ko\n**Age:** mid-40s\n- **Personality:** Loud.")
    assert markdown.profile.age == 40 and markdown.profile.personality == "Loud."
    assert markdown.profile.race == UNSPECIFIED and "race" in markdown.filled
    assert parse_profile_text("").problem == "empty profile"
    assert parse_profile_text("Age: 30").problem == "profile has no Name line"
    assert parse_profile_text("Name: X\nAge: unknown").problem == "profile has no age between 1 and 120"
    long = parse_profile_text(f"Name: X\nAge: 30\nAppearance: {'tall ' * 300}")
    assert long.shortened == ["appearance"] and len(long.profile.appearance) == 600


def test_import_makes_a_run_every_command_accepts(tmp_path, run_cli):
    release, run = write_release(tmp_path / "release"), tmp_path / "run"
    code, _, err = run_cli("import", release, "--out", run, "--from", "opencharacter-release", "-q")
    assert code == 0, err
    assert "characters: 5 of 6 rows imported; dropped: 1 empty profile" in err
    assert "dialogues: 15 of 19 rows imported" in err and "3 of a dropped character" in err
    assert "1 of a character the release's profiles do not have" in err
    characters = read_jsonl(run / "characters.jsonl")
    assert [c["character_id"] for c in characters] == [character_id(i) for i in (0, 1, 3, 4, 5)]
    assert characters[0]["character"] == PROFILE.replace("Amara Okafor", "Person 0").replace("34", "30")
    dialogues = read_jsonl(run / "dialogues.jsonl")
    first = dialogues[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == render_system_prompt(characters[0]["persona"], characters[0]["character"])
    assert first["messages"][1]["content"] == "Question 0: how do maps lie?"
    assert first["character_answer"] == first["messages"][2]["content"]
    assert first["source"] == "opencharacter-release" and first["model"] == "opencharacter-release"
    assert first["question_id"] == "alpaca-0" and first["strategy"] == "generate"
    card = (run / "README.md").read_text(encoding="utf-8")
    assert "xywang1/OpenCharacter" in card and "license: apache-2.0" in card
    assert str(tmp_path) not in card  # provenance names the release, not this machine's path

    # train, filter, export and eval read it as they read a synthesized run
    from opencharacter.eval.sources import load_run_characters
    from opencharacter.train.data import load_training_data

    data = load_training_data(run)
    assert len(data.examples) == 15 and data.system_prompt_version == first["system_prompt_version"]
    assert len(load_run_characters(run)) == 5
    code, _, err = run_cli("filter", "--run", run)
    assert code == 0, err
    assert len(read_jsonl(run / "filtered" / "dialogues.jsonl")) > 0
    code, out, err = run_cli("export", "--run", run, "--format", "sharegpt", "--format", "cards")
    assert code == 0 and "wrote 15 dialogues" in out and "wrote 5 character cards" in out, err


def test_import_is_idempotent_and_resumes_from_its_checkpoint(tmp_path, run_cli, monkeypatch):
    release = write_release(tmp_path / "release", characters=5, per_character=8)
    fresh = tmp_path / "fresh"
    assert run_cli("import", release, "--out", fresh, "-q")[0] == 0

    # --limit stops early; a rerun without it goes on where it stopped
    run = tmp_path / "run"
    code, _, err = run_cli("import", release, "--out", run, "--limit", 7, "-q")
    assert code == 0 and "stopped at --limit" in err
    assert len(read_jsonl(run / "dialogues.jsonl")) == 7
    assert run_cli("import", release, "--out", run, "-q")[0] == 0
    assert (run / "dialogues.jsonl").read_bytes() == (fresh / "dialogues.jsonl").read_bytes()

    # interrupted (Ctrl-C at a checkpoint): exit 130, then a rerun finishes without duplicates
    monkeypatch.setattr(release_import, "CHECKPOINT_ROWS", 4)
    calls = {"n": 0}
    original = release_import._Importer.dialogues

    def interrupting(self, limit, progress):
        def stop(report):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

        return original(self, limit, stop)

    monkeypatch.setattr(release_import._Importer, "dialogues", interrupting)
    stopped = tmp_path / "stopped"
    code, _, err = run_cli("import", release, "--out", stopped, "-q")
    assert code == 130 and "rerun the same command to resume" in err
    monkeypatch.setattr(release_import._Importer, "dialogues", original)
    assert 0 < len(read_jsonl(stopped / "dialogues.jsonl")) < 32
    assert run_cli("import", release, "--out", stopped, "-q")[0] == 0
    assert (stopped / "dialogues.jsonl").read_bytes() == (fresh / "dialogues.jsonl").read_bytes()

    # killed between checkpoints (kill -9): rows past the last checkpoint are in the store; replaying them adds nothing
    store = RunStore(stopped)
    progress = store.get_meta(release_import.PROGRESS_META)
    progress["dialogues"] = {"offset": 0, "line": 0, "read": 0, "kept": 0, "dropped": {}, "done": False}
    store.set_meta(release_import.PROGRESS_META, progress)
    store.close()
    code, _, err = run_cli("import", release, "--out", stopped, "-q")
    assert code == 0 and "dialogues: 32 of 41 rows imported" in err
    assert (stopped / "dialogues.jsonl").read_bytes() == (fresh / "dialogues.jsonl").read_bytes()
    # finished: a rerun changes nothing
    assert run_cli("import", release, "--out", stopped, "-q")[0] == 0
    assert (stopped / "dialogues.jsonl").read_bytes() == (fresh / "dialogues.jsonl").read_bytes()


def test_question_keys_and_bad_lines_are_one_line_errors(tmp_path, run_cli):
    instruction = write_release(tmp_path / "instruction", question_key="instruction")
    assert run_cli("import", instruction, "--out", tmp_path / "ok", "-q")[0] == 0
    assert read_jsonl(tmp_path / "ok" / "dialogues.jsonl")[0]["messages"][1]["content"].startswith("Question 0")

    odd = write_release(tmp_path / "odd", question_key="utterance")
    code, _, err = run_cli("import", odd, "--out", tmp_path / "odd-run", "-q")
    assert code == 2 and err.count("\n") == 1
    assert "synthetic_dialogue.jsonl:1: no question text: none of question, instruction, prompt" in err
    assert "keys found: character_answer, character_id, question_id, utterance" in err
    assert not (tmp_path / "odd-run").exists()  # a failed first import leaves nothing behind

    broken = write_release(tmp_path / "broken")
    with (broken / "synthetic_dialogue.jsonl").open("a", encoding="utf-8") as stream:
        stream.write('{"character_id": "x", "question_id": \n')
    code, _, err = run_cli("import", broken, "--out", tmp_path / "broken-run", "-q")
    assert code == 2 and "synthetic_dialogue.jsonl:20: malformed JSON" in err and "Traceback" not in err
    code, _, err = run_cli("import", broken, "--out", tmp_path / "skipped", "--skip-invalid", "-q")
    assert code == 0 and "1 malformed lines skipped, first:" in err and ":20:" in err

    code, _, err = run_cli("import", tmp_path / "nowhere", "--out", tmp_path / "r", "-q")
    assert code == 2 and "no such directory" in err
    code, _, err = run_cli("import", broken, "--out", tmp_path / "r", "--from", "somewhere-else")
    assert code == 2 and "choose one of opencharacter-release" in err


def test_a_run_holds_one_import_and_never_teacher_data(tmp_path, run_cli, personas_file):
    release = write_release(tmp_path / "release")
    run = tmp_path / "run"
    assert run_cli("import", release, "--out", run, "-q")[0] == 0
    relabelled = run_cli("import", release, "--out", run, "--strategy", "rewrite", "-q")
    assert relabelled[0] == 2 and "holds another import (strategy 'generate' → 'rewrite')" in relabelled[2]
    code, _, err = run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 2, "--backend", "fake")
    assert code == 2 and "holds data made by opencharacter-release" in err
    made = tmp_path / "made"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", made, "--limit", 2, "--backend", "fake", "-q")[0] == 0
    )
    code, _, err = run_cli("import", release, "--out", made, "-q")
    assert code == 2 and "already holds data made by" in err


def test_a_hub_id_is_fetched_with_huggingface_hub(tmp_path):
    """`hf:owner/name` goes through huggingface_hub's snapshot_download, here against a local stand-in Hub."""
    release = write_release(tmp_path / "release")
    files = {name: (release / name).read_bytes() for name in ("synthetic_character.jsonl", "synthetic_dialogue.jsonl")}
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# OpenCharacter\n"
    files["other.bin"] = b"not fetched"
    with FakeHub() as hub:
        hub.add_repo("xywang1/OpenCharacter", "dataset", files)
        env = {**os.environ, **hub.env(tmp_path / "hf-home")}
        result = subprocess.run(
            [CLI, "import", "hf:xywang1/OpenCharacter", "--out", str(tmp_path / "run"), "-q"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        missing = subprocess.run(
            [CLI, "import", "hf:me/missing", "--out", str(tmp_path / "none")], env=env, capture_output=True, text=True
        )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "hf:me/missing: could not download it from the Hub (404" in missing.stderr
    assert not (tmp_path / "none").exists()
    assert result.returncode == 0, result.stderr
    assert f"imported hf:xywang1/OpenCharacter@{'0123456789abcdef' * 2}" in result.stderr
    fetched = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    assert sorted(p.rsplit("/", 1)[1] for p in fetched) == [
        "README.md",
        "synthetic_character.jsonl",
        "synthetic_dialogue.jsonl",
    ]
    assert len(read_jsonl(tmp_path / "run" / "dialogues.jsonl")) == 15


@pytest.mark.parametrize("source", ["hf:just-a-name", "hf:a/b/c"])
def test_a_malformed_hub_id_is_a_config_error(tmp_path, run_cli, source):
    code, _, err = run_cli("import", source, "--out", tmp_path / "run")
    assert code == 2 and "hf:owner/name" in err
