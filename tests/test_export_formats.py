"""Exports that trainers load as they are: LLaMA-Factory needs a dataset_info.json entry per file."""

from __future__ import annotations

import json

import pytest

from opencharacter.errors import ConfigError
from opencharacter.export.formats import export_dialogues
from opencharacter.records import ChatMessage, Dialogue
from tests.conftest import read_jsonl


def dialogue(turns: int) -> Dialogue:
    messages = [ChatMessage(role="system", content="You are Ines, a lighthouse keeper.")]
    for i in range(turns):
        messages += [ChatMessage(role="user", content=f"Q{i}?"), ChatMessage(role="assistant", content=f"A{i}.")]
    return Dialogue(
        dialogue_id=f"d{turns}",
        question_id="q",
        character_id="c",
        strategy="generate",
        source="test",
        messages=messages,
        character_answer=messages[-1].content,
        model="m",
        prompt_version="generate@v1",
        system_prompt_version="system@v1",
    )


def test_alpaca_export_describes_its_system_and_history_columns(tmp_path):
    path, rows = export_dialogues([dialogue(1), dialogue(3)], "alpaca", tmp_path)
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    entry = info["opencharacter_alpaca"]
    assert entry["file_name"] == path.name == "alpaca.jsonl" and "formatting" not in entry  # alpaca is the default
    assert entry["columns"] == {
        "prompt": "instruction",
        "query": "input",
        "response": "output",
        "system": "system",
        "history": "history",
    }
    records = read_jsonl(path)
    assert rows == 2 and all(set(entry["columns"].values()) <= set(r) for r in records)
    assert records[1]["system"].startswith("You are Ines") and records[1]["history"] == [["Q0?", "A0."], ["Q1?", "A1."]]


def test_each_export_adds_its_entry_and_keeps_the_others(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}), encoding="utf-8")
    export_dialogues([dialogue(1)], "alpaca", tmp_path)
    export_dialogues([dialogue(1)], "sharegpt", tmp_path)
    export_dialogues([dialogue(1)], "messages", tmp_path)
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {"mine", "opencharacter_alpaca", "opencharacter_sharegpt", "opencharacter_messages"}
    share = info["opencharacter_sharegpt"]
    assert share["formatting"] == "sharegpt" and share["columns"] == {"messages": "conversations"}
    first = read_jsonl(tmp_path / "sharegpt.jsonl")[0]["conversations"][0]
    assert first[share["tags"]["role_tag"]] == share["tags"]["system_tag"]
    assert info["opencharacter_messages"]["tags"]["role_tag"] == "role"


def test_a_broken_dataset_info_is_not_overwritten(tmp_path):
    (tmp_path / "dataset_info.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dataset_info\.json: not a JSON object"):
        export_dialogues([dialogue(1)], "alpaca", tmp_path)
    assert (tmp_path / "dataset_info.json").read_text(encoding="utf-8") == "{not json"
