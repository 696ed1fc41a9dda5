"""`opencharacter push`: huggingface_hub's real client against a stand-in Hub on 127.0.0.1 (tests/fake_hub.py).

Never run against the real Hub. The stand-in takes every file as a regular blob, so LFS/Xet
transfers are not exercised; what is checked is what huggingface_hub sends: the repository it
creates (private by default), the README it validates, and the files of each commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_hub import FakeHub

CLI = str(Path(sys.executable).with_name("opencharacter"))


def push(hub: FakeHub, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **hub.env(tmp_path / "hf-home")}
    return subprocess.run([CLI, "push", *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_dir(tmp_path, run_cli, personas_file):
    run = tmp_path / "run"
    assert (
        run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 3, "--backend", "fake", "-q")[0] == 0
    )
    assert run_cli("export", "--run", run, "--format", "messages", "--format", "parquet", "--format", "cards")[0] == 0
    (run / "shards").mkdir()
    (run / "shards" / "store.sqlite").write_bytes(b"shard store")
    return run


def test_push_a_run_uploads_its_files_never_its_store(tmp_path, run_dir):
    with FakeHub() as hub:
        result = push(hub, tmp_path, "--run", run_dir, "--repo", "me/lighthouse-data")
    assert result.returncode == 0, result.stderr
    assert "uploaded" in result.stderr and "private dataset repository me/lighthouse-data" in result.stderr
    created = hub.created[0]  # huggingface_hub 2.x says `visibility`, 1.x `private`
    assert created["name"] == "lighthouse-data" and created["organization"] == "me" and created["type"] == "dataset"
    assert created.get("visibility") == "private" or created.get("private") is True
    repo = hub.repos["me/lighthouse-data"]
    assert repo.private and repo.repo_type == "dataset"
    files = set(repo.files)
    assert {"README.md", "characters.jsonl", "dialogues.jsonl", "exports/README.md", "exports/messages.jsonl"} <= files
    assert "exports/dialogues.parquet" in files and any(f.startswith("exports/cards/") for f in files)
    assert not any(f.endswith((".sqlite", ".lock")) or "sqlite-" in f or f.startswith("shards/") for f in files)
    # what the Hub validated is the card we committed, and the default config names the dialogues
    card = repo.files["README.md"].decode()
    assert hub.validated[0]["content"] == card
    meta = yaml.safe_load(card.split("---\n")[1])
    default = [c for c in meta["configs"] if c.get("default")]
    assert [c["config_name"] for c in default] == ["dialogues"]
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert meta["license"] == "other" and meta["pretty_name"]  # the fake teacher's terms are unknown
    assert str(tmp_path) not in card and str(tmp_path) not in repo.files["exports/README.md"].decode()


def test_dry_run_lists_the_files_and_sends_nothing(tmp_path, run_dir):
    with FakeHub() as hub:
        result = push(hub, tmp_path, "--run", run_dir, "--repo", "me/data", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert "README.md" in listed and "dialogues.jsonl" in listed and "exports/messages.jsonl" in listed
    assert "store.sqlite" not in listed and "run.lock" not in listed and "shards/store.sqlite" not in listed
    assert "would upload" in result.stderr and "private dataset repository me/data" in result.stderr


def test_license_and_public_are_the_users_choice(tmp_path, run_dir):
    with FakeHub() as hub:
        result = push(hub, tmp_path, "--run", run_dir, "--repo", "me/open", "--public", "--license", "cc-by-4.0")
    assert result.returncode == 0, result.stderr
    created = hub.created[0]
    assert created.get("visibility", "public") == "public" and not created.get("private")
    assert not hub.repos["me/open"].private
    assert "license: cc-by-4.0" in hub.repos["me/open"].files["README.md"].decode()
    # kept with the run: later cards keep it
    assert "license: cc-by-4.0" in (run_dir / "README.md").read_text(encoding="utf-8")


def test_a_model_directory_goes_up_without_checkpoints_or_local_paths(tmp_path):
    model = tmp_path / "m1"
    (model / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (model / "checkpoints" / "checkpoint-8" / "optimizer.pt").write_bytes(b"x" * 100)
    for name in ("adapter_model.safetensors", "tokenizer.json", "loss.png"):
        (model / name).write_bytes(b"weights")
    (model / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    )
    (model / "gguf").mkdir()
    (model / "gguf" / "m1-q8_0.gguf").write_bytes(b"GGUF")
    meta = {
        "base_model": "embedded", "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "method": "lora",
        "data": str(tmp_path / "runs" / "r1"), "system_prompt_version": "character_system@v1",
        "config": {"model": "embedded", "init_adapter": None}, "train_examples": 10, "validation_examples": 2,
        "truncated": 0, "steps": 8, "final_train_loss": 1.0, "final_validation_loss": 1.1,
    }  # fmt: skip
    (model / "opencharacter.json").write_text(json.dumps(meta))
    with FakeHub() as hub:
        result = push(hub, tmp_path, "--model", model, "--repo", "me/ines-lora")
    assert result.returncode == 0, result.stderr
    repo = hub.repos["me/ines-lora"]
    assert repo.repo_type == "model" and repo.private
    weights = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"}
    assert set(repo.files) == {"README.md", "loss.png", "gguf/m1-q8_0.gguf", *weights}
    card = repo.files["README.md"].decode()
    meta_yaml = yaml.safe_load(card.split("---\n")[1])
    assert meta_yaml["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta_yaml["license"] == "apache-2.0"
    assert meta_yaml["pipeline_tag"] == "text-generation" and meta_yaml["library_name"] == "peft"
    assert str(tmp_path) not in card and "gguf/m1-q8_0.gguf" in card


def test_hub_refusals_are_one_line_exit_1(tmp_path, run_dir):
    with FakeHub(token="the-right-one") as hub:
        env = {**os.environ, **hub.env(tmp_path / "hf-home"), "HF_TOKEN": "a-wrong-one"}
        result = subprocess.run(
            [CLI, "push", "--run", str(run_dir), "--repo", "me/data"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the Hub refused the upload to me/data") and "hf auth login" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--repo", "no-owner", "--run", "."), "owner/name"),
        (("--repo", "me/x"), "give exactly one of --run DIR or --model DIR"),
        (("--repo", "me/x", "--run", "nowhere"), "not a run directory"),
        (("--repo", "me/x", "--model", "nowhere"), "no such model directory"),
        (
            ("--repo", "me/x", "--model", ".", "--token-env", "OC_NO_SUCH_VARIABLE"),
            "that environment variable is not set",
        ),
    ],
)
def test_push_misuse_is_exit_2(tmp_path, run_cli, args, problem):
    code, _, err = run_cli("push", *args)
    assert code == 2 and problem in err
