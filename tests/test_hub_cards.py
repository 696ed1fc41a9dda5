"""Dataset and model cards made with huggingface_hub: what the Hub and `datasets` read, and nothing local."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard

from opencharacter.export.card import size_category
from opencharacter.export.licenses import default_license
from opencharacter.export.shareable import shareable, shareable_text
from opencharacter.sources.bundled import sample_path
from opencharacter.train.report import write_model_card


def front_matter(path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])


@pytest.fixture
def made_run(tmp_path, run_cli, personas_file):
    """A fake-backend run whose commands name an absolute path and a server URL with credentials."""
    run = tmp_path / "run"
    secret = "http://ana:s3cret-pass@gpu1.internal:8000/v1?token=abc#frag"
    code, _, err = run_cli(
        "profiles", "--personas", personas_file.resolve(), "--out", run, "--limit", 4, "--backend", "fake",
        "--base-url", secret, "-q",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        "synthesize", "--run", run, "--instructions", sample_path("instructions.jsonl"), "--limit", 3,
        "--per-instruction", 2, "--backend", "fake", "--base-url", secret, "-q",
    )  # fmt: skip
    assert code == 0, err
    return run


def test_load_dataset_of_a_run_gives_the_dialogues(made_run, run_cli):
    import datasets

    datasets.disable_progress_bars()
    dialogues = datasets.load_dataset(str(made_run), split="train")
    assert dialogues.num_rows == 6 and dialogues[0]["messages"][0]["role"] == "system"
    characters = datasets.load_dataset(str(made_run), "characters", split="train")
    assert characters.num_rows == 4 and "persona" in characters.column_names

    assert (
        run_cli("export", "--run", made_run, "--format", "messages", "--format", "parquet", "--format", "alpaca")[0]
        == 0
    )
    exports = made_run / "exports"
    meta = front_matter(exports / "README.md")
    assert [(c["config_name"], c.get("default", False)) for c in meta["configs"]] == [
        ("messages", True), ("alpaca", False),
    ]  # fmt: skip
    default = datasets.load_dataset(str(exports), split="train")
    assert default.column_names == ["messages", "dialogue_id", "character_id", "strategy"] and default.num_rows == 6
    alpaca = datasets.load_dataset(str(exports), "alpaca", split="train")
    assert alpaca.num_rows == 6 and "instruction" in alpaca.column_names
    parquet = datasets.load_dataset("parquet", data_files=str(exports / "dialogues.parquet"), split="train")
    assert parquet.num_rows == 6 and "character_answer" in parquet.column_names
    assert 'load_dataset("parquet", data_files="dialogues.parquet")' in (exports / "README.md").read_text()


def test_the_dataset_card_has_the_hub_fields_and_no_local_secrets(made_run, tmp_path):
    card = DatasetCard.load(made_run / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["text-generation"] and data["size_categories"] == ["n<1K"]
    assert data["license"] == "other" and data["pretty_name"] == "OpenCharacter role-play dialogues (run)"
    assert data["language"] == ["en"] and "role-playing" in data["tags"]
    text = (made_run / "README.md").read_text(encoding="utf-8")
    for leak in (str(tmp_path), "s3cret", "ana:", "token=abc", "#frag", "/root", "/home"):
        assert leak not in text, leak
    assert "http://gpu1.internal:8000/v1" in text  # the server is named, its credentials are not
    assert "`fake:embedded`'s terms of use govern this synthetic data; set the license with `push --license`" in text


def test_license_defaults_follow_the_teacher():
    assert default_license("SmolLM2-135M-Instruct (embedded)") == "apache-2.0"
    assert default_license("meta-llama/Meta-Llama-3-70B-Instruct") == "llama3"
    assert default_license("meta-llama/Llama-3.1-8B-Instruct") == "llama3.1"
    assert default_license("gpt-4o-mini") == "other" and default_license(None) == "other"
    assert [size_category(n) for n in (0, 999, 1000, 306_000, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "1M<n<10M",
    ]  # fmt: skip


def test_shareable_keeps_names_and_drops_places():
    assert shareable_text("/home/ana/data/persona.jsonl") == "…/persona.jsonl"
    assert shareable_text("~/runs/r1") == "…/r1"
    assert shareable_text("C:\\Users\\ana\\p.jsonl") == "…/p.jsonl"
    assert shareable_text("https://u:p@h.example:8000/v1?k=1") == "https://h.example:8000/v1"
    assert shareable_text("runs/r1") == "runs/r1" and shareable_text("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert shareable({"a": ["/x/y", {"b": "http://k@h/"}]}) == {"a": ["…/y", {"b": "http://h/"}]}


def _meta(**changes) -> dict:
    meta = {
        "base_model": "embedded", "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "method": "lora",
        "data": "runs/r1", "system_prompt_version": "character_system@v1", "train_examples": 10,
        "validation_examples": 2, "truncated": 0, "steps": 8, "final_train_loss": 1.0, "final_validation_loss": 1.2,
        "config": {"model": "embedded", "init_adapter": None, "output": "/home/ana/models/m1"},
    }  # fmt: skip
    return {**meta, **changes}


def test_model_card_fields_and_base_model_only_as_a_hub_id(tmp_path):
    out = tmp_path / "m1"
    out.mkdir()
    card = ModelCard.load(write_model_card(out, _meta()))
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "text-generation" and data["library_name"] == "peft"
    assert "/home/ana" not in card.content and str(tmp_path) not in card.content

    local = tmp_path / "my-base"
    local.mkdir()
    card = ModelCard.load(write_model_card(out, _meta(base_model=str(local), base_model_id=str(local), method="full")))
    assert "base_model" not in card.data.to_dict() and str(tmp_path) not in card.content
    assert "a local model (`…/my-base`)" in card.content and card.data.library_name == "transformers"


def test_model_card_names_hub_datasets_it_was_trained_on(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "README.md").write_text("---\nsource_datasets:\n- xywang1/OpenCharacter\n---\n# data\n", encoding="utf-8")
    out = tmp_path / "m1"
    out.mkdir()
    assert ModelCard.load(write_model_card(out, _meta(data=str(run)))).data.datasets == ["xywang1/OpenCharacter"]
    assert ModelCard.load(write_model_card(out, _meta(data="me/my-run"))).data.datasets == ["me/my-run"]
    (out / "opencharacter.json").write_text(json.dumps(_meta(data="me/my-run")))
    from opencharacter.train.report import refresh_model_card

    refresh_model_card(out, license="cc-by-nc-4.0")
    assert ModelCard.load(out / "README.md").data.license == "cc-by-nc-4.0"
    assert json.loads((out / "opencharacter.json").read_text())["license"] == "cc-by-nc-4.0"
