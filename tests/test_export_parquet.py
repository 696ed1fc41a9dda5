"""Parquet export streams in row groups with a fixed schema: the rows read back are the dialogues."""

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from opencharacter.export import formats  # noqa: E402
from opencharacter.records import ChatMessage, Dialogue  # noqa: E402


def dialogue(i: int, finish_reasons: list[str]) -> Dialogue:
    return Dialogue(
        dialogue_id=f"d{i}",
        question_id=f"q{i}",
        character_id="c",
        strategy="generate",
        source="lima",
        messages=[ChatMessage(role="user", content=f"question {i}"), ChatMessage(role="assistant", content="hi")],
        character_answer="hi",
        model="m",
        prompt_version="generate.v1",
        system_prompt_version="system.v1",
        finish_reasons=finish_reasons,
        candidate=i % 2,
    )


def test_the_schema_names_every_dialogue_field():
    assert formats.parquet_schema().names == list(Dialogue.model_fields)


def test_rows_are_written_in_groups_and_read_back_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "PARQUET_BATCH", 3)
    # The first group has no finish reason at all: inferred from it, the column would be list<null>.
    made = [dialogue(i, [] if i < 3 else ["stop"]) for i in range(7)]
    path, count = formats.export_dialogues(iter(made), "parquet", tmp_path)
    assert count == 7
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    assert [Dialogue.model_validate(row) for row in parquet.read().to_pylist()] == made


def test_no_dialogues_still_write_a_readable_empty_file(tmp_path):
    path, count = formats.export_dialogues(iter([]), "parquet", tmp_path)
    assert count == 0 and pq.read_table(path).num_rows == 0
