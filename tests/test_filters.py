from __future__ import annotations

import json

from opencharacter.config import FiltersConfig
from opencharacter.filters import apply_filters, rules
from opencharacter.records import Character, ChatMessage, Dialogue, Profile
from opencharacter.store import RunStore

PROFILE = Profile(
    name="Ines Moreau", age=67, gender="female", race="French", birth_place="Brest",
    appearance="Silver hair tied back, a navy wool coat and a brass pocket watch on a chain.",
    general_experience="Kept the Kermorvan lighthouse for thirty years and now restores antique clocks in Brest.",
    personality="Patient, precise and wry; she speaks slowly and loves maritime proverbs.",
)  # fmt: skip


def character(cid: str, profile: Profile = PROFILE) -> Character:
    return Character(character_id=cid, persona=f"persona {cid}", character=profile.render(), profile=profile,
                     model="m", prompt_version="profile@v1")  # fmt: skip


def dialogue(did: str, answer: str, cid: str = "c1", reasons: list[str] | None = None) -> Dialogue:
    return Dialogue(
        dialogue_id=did, question_id="q", character_id=cid, strategy="generate", source="s",
        messages=[ChatMessage(role="system", content="sys"), ChatMessage(role="user", content="Hi?"),
                  ChatMessage(role="assistant", content=answer)],
        character_answer=answer, model="m", prompt_version="generate@v1", system_prompt_version="character_system@v1",
        finish_reasons=reasons or ["stop"],
    )  # fmt: skip


GOOD = "Ah, the tide waits for no one, and neither do my clocks. Come in out of the wind."


def test_each_rule_catches_its_case_and_spares_a_good_answer():
    assert rules.breaks_character(dialogue("a", "As an AI, I don't have a lighthouse.")).startswith("breaks character")
    assert rules.breaks_character(dialogue("b", "I'm sorry, but I can't help with that request.")) is not None
    assert rules.breaks_character(dialogue("c", GOOD)) is None
    copied = "Well, I kept the Kermorvan lighthouse for thirty years and now restore antique clocks in Brest."
    assert rules.copies_profile(dialogue("d", copied), character("c1"), span=8) is not None
    assert rules.copies_profile(dialogue("e", GOOD), character("c1"), span=8) is None
    assert rules.length_out_of_bounds(dialogue("f", "Yes."), 20, 100) == "answer shorter than 20 characters"
    assert rules.length_out_of_bounds(dialogue("g", GOOD), 20, 100) is None
    assert rules.truncated_or_empty(dialogue("h", GOOD, reasons=["length"])) is not None
    assert rules.truncated_or_empty(dialogue("i", GOOD)) is None


def test_filtering_a_run_reports_what_went_and_why(tmp_path):
    twin = PROFILE.model_copy(update={"name": "Inès Moreau"})
    other = Profile(name="Raj Patel", age=29, gender="male", race="Indian", birth_place="Pune",
                    appearance="Tall, headphones around his neck.", general_experience="A game designer in Berlin.",
                    personality="Restless, funny, talks fast.")  # fmt: skip
    store = RunStore(tmp_path / "run")
    for index, c in enumerate([character("c1"), character("c2", twin), character("c3", other)]):
        store.put_record("profiles", c.character_id, f"{index}", c)
    rows = [
        dialogue("d1", GOOD), dialogue("d2", "As an AI language model I cannot."), dialogue("d3", "Ok."),
        dialogue("d4", GOOD, reasons=["length"]), dialogue("d5", GOOD, cid="c2"), dialogue("d6", GOOD, cid="c3"),
    ]  # fmt: skip
    for index, d in enumerate(rows):
        store.put_record("dialogues", d.dialogue_id, f"{index}", d)
    store.close()
    target, report = apply_filters(tmp_path / "run", FiltersConfig())
    kept = [json.loads(line)["dialogue_id"] for line in (target / "dialogues.jsonl").read_text().splitlines()]
    assert kept == ["d1", "d6"]
    assert report.characters_out == 2 and report.dialogues_in == 6 and report.dialogues_out == 2
    assert report.removed["near-duplicate profile (characters)"] == 1
    assert report.removed["character removed as a near-duplicate profile"] == 1
    assert (
        report.removed["breaks character"] == 1
        and report.removed["answer cut at max_tokens (finish_reason = length)"] == 1
    )
    assert report.removed["answer shorter than 20 characters"] == 1
    saved = json.loads((target / "filter_report.json").read_text())
    assert saved["dialogues_out"] == 2 and saved["config"]["near_duplicate_profiles"] == 0.95
