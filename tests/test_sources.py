from __future__ import annotations

import json

import pytest

from opencharacter.errors import InputError
from opencharacter.records import Persona
from opencharacter.sources import load_instructions, load_personas


def test_persona_hub_persona_jsonl_is_read(personas_file):
    personas, report = load_personas(personas_file)
    assert report.read >= 50
    assert len(personas) == report.kept == report.read - report.duplicates
    assert all(isinstance(p, Persona) and p.persona for p in personas)
    assert len({p.character_id for p in personas}) == len(personas)


def test_personahub_synthetic_shape_text_and_duplicates(tmp_path, write_jsonl):
    synthetic = write_jsonl(
        "tool.jsonl",
        [
            {"input persona": "A chemist  who bakes.", "synthesized text": "x", "description": "y"},
            {"input persona": "A chemist who bakes.", "synthesized text": "z", "description": "y"},
            {"input persona": "A poet.", "synthesized text": "x", "description": "y"},
        ],
    )
    personas, report = load_personas(synthetic)
    assert [p.persona for p in personas] == ["A chemist who bakes.", "A poet."]
    assert report.duplicates == 1
    text = tmp_path / "personas.txt"
    text.write_text("A sailor.\n\nA sailor.\nA judge.\n", encoding="utf-8")
    personas, report = load_personas(text)
    assert [p.persona for p in personas] == ["A sailor.", "A judge."] and report.duplicates == 1


def test_persona_id_is_stable_and_whitespace_insensitive():
    assert Persona(persona="A  poet.").character_id == Persona(persona=" A poet. ").character_id
    assert Persona(persona="A poet.").character_id != Persona(persona="A painter.").character_id


def test_saved_dataset_directory_with_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"who": ["A baker.", "A pilot."], "n": [1, 2]}).save_to_disk(tmp_path / "ds")
    personas, _ = load_personas(tmp_path / "ds", fmt="dataset", column="who")
    assert [p.persona for p in personas] == ["A baker.", "A pilot."]


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b'{"persona": "ok"}\n{"persona": ""}\n', 2, "persona is empty"),
        (b'{"persona": "ok"}\n{"persona": "a"\n', 2, "malformed JSON"),
        (b'{"persona": "ok"}\n\n{"name": "x"}\n', 3, "missing field"),
        (b'{"persona": "ok"}\n{"persona": "caf\xe9"}\n', 2, "not valid UTF-8"),
        (b'{"persona": 3}\n', 1, "must be a string"),
    ],
)
def test_bad_persona_input_names_file_line_and_problem(tmp_path, content, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_personas(path)
    assert caught.value.line == line
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_skip_invalid_keeps_the_good_records_and_reports_the_bad(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"persona": "A"}\n{"persona": "  "}\nnot json\n{"persona": "B"}\n', encoding="utf-8")
    personas, report = load_personas(path, skip_invalid=True)
    assert [p.persona for p in personas] == ["A", "B"]
    assert [e.line for e in report.invalid] == [2, 3]


def test_alpaca_array_joins_input_and_reports_item_lines(tmp_path):
    path = tmp_path / "alpaca.json"
    rows = [
        {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
        {"instruction": "Say hi.", "input": "", "output": "Hi"},
    ]
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    instructions, _ = load_instructions(path)
    assert instructions[0].user_turns == ["Translate.\n\nBonjour"]
    assert instructions[1].turns[1].content == "Hi" and instructions[1].source == "alpaca"
    rows.append({"input": "no instruction"})
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_instructions(path)
    assert caught.value.line == 12  # the line where the third object starts
    assert "'instruction'" in caught.value.problem or "unrecognised" in caught.value.problem


def test_lima_multi_turn_personahub_sharegpt_and_messages(write_jsonl):
    path = write_jsonl(
        "mixed.jsonl",
        [
            {"conversations": ["Q1", "A1", "Q2", "A2"]},
            {"input persona": "p", "synthesized text": "User prompt:\n Plan a trip.", "description": "d"},
            {
                "conversations": [
                    {"from": "system", "value": "S"},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Yo"},
                ]
            },
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "U"},
                    {"role": "assistant", "content": "V"},
                ]
            },
        ],
    )
    lima, hub, share, messages = load_instructions(path)[0]
    assert lima.user_turns == ["Q1", "Q2"] and lima.answers == ["A1", "A2"] and lima.fully_answered
    assert hub.user_turns == ["Plan a trip."] and not hub.fully_answered
    assert [t.role for t in share.turns] == ["user", "assistant"]
    assert messages.answers == ["V"]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"conversations": []}, "non-empty list"),
        ({"conversations": ["Q", 3]}, "item 2 must be a string"),
        ({"conversations": ["Q", ""]}, "turn 2 (assistant) is empty"),
        ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown speaker"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "should be a user turn"),
    ],
)
def test_odd_sessions_are_clear_errors(write_jsonl, row, problem):
    path = write_jsonl("odd.jsonl", [{"conversations": ["ok", "fine"]}, row])
    with pytest.raises(InputError) as caught:
        load_instructions(path)
    assert caught.value.line == 2 and problem in caught.value.problem


def test_bundled_samples_meet_the_demo_needs():
    from opencharacter.sources.bundled import sample_path

    personas, _ = load_personas(sample_path("personas.jsonl"))
    instructions, _ = load_instructions(sample_path("instructions.jsonl"))
    assert len(personas) >= 50 and len(instructions) >= 30
    assert sum(len(i.user_turns) > 1 for i in instructions) >= 5
    assert all(i.fully_answered for i in instructions)


def test_the_personal_questions_sample_never_asks_an_evaluation_question():
    """The CPU recipe trains on these; evaluation's fidelity questions must stay unseen."""
    from opencharacter.eval.fidelity import QUESTIONS
    from opencharacter.sources import load_instructions
    from opencharacter.sources.bundled import sample_path

    instructions, report = load_instructions(sample_path("personal_questions.jsonl"))
    asked = {i.turns[0].content.strip().lower() for i in instructions}
    assert len(instructions) == report.kept == 24
    assert not asked & {q.lower() for q in QUESTIONS}
    # Every question has a plain first-person answer for rewrite (R) to put in a character's voice.
    assert all(len(i.turns) == 2 and i.turns[1].role == "assistant" for i in instructions)
