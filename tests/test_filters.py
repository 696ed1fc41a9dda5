from __future__ import annotations

import json
import random

import pytest

from opencharacter.config import FiltersConfig
from opencharacter.filters import apply_filters, junk, rules
from opencharacter.filters.near_duplicates import (
    MAX_CANDIDATES,
    jaccard,
    near_duplicate_profiles,
    near_duplicates,
    profile_words,
)
from opencharacter.records import Character, ChatMessage, Dialogue, Instruction, Profile
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


# -- near-duplicate profiles at scale ----------------------------------------------------------------------

FIRST = ["Ada", "Bruno", "Chidi", "Dana", "Emil", "Farah", "Goran", "Hina", "Ivo", "Jun", "Kofi", "Lena"]
JOBS = [
    "repairs fishing boats in a small harbour and races dinghies on weekends",
    "teaches chemistry at a night school and brews cider in the garage",
    "drives a night bus across the city and writes crime novels on breaks",
    "runs a bakery famous for rye bread and sings in a church choir",
    "restores stained-glass windows for old chapels across the region",
    "codes trading software by day and coaches a youth football team",
    "works as a midwife in a rural clinic and keeps bees on the roof",
    "guides mountain tours in summer and carves wooden toys in winter",
]
MOODS = ["gruff but kind", "cheerful and chatty", "quiet and precise", "dramatic and funny", "anxious yet brave"]


def varied_profiles(count: int, seed: int = 3) -> list[Profile]:
    rng = random.Random(seed)
    profiles = []
    for _ in range(count):
        name = f"{rng.choice(FIRST)} {rng.choice(['Moreau', 'Okafor', 'Sato', 'Novak', 'Reyes'])}"
        work = f"{rng.choice(JOBS).capitalize()}; before that {rng.choice(JOBS)}."
        look = f"{rng.choice(['Tall', 'Short', 'Wiry'])}, with {rng.choice(['a red scarf', 'round glasses', 'a cap'])}."
        profiles.append(
            Profile(name=name, age=rng.randint(18, 80), gender=rng.choice(["female", "male"]),
                    race=rng.choice(["Irish", "Thai", "Ghanaian"]), birth_place=rng.choice(["Cork", "Kumasi", "Porto"]),
                    appearance=look, general_experience=work,
                    personality=f"{rng.choice(MOODS).capitalize()}, and {rng.choice(MOODS)} with strangers.")
        )  # fmt: skip
    return profiles


def planted_set() -> tuple[list[Character], set[str]]:
    """24 distinct profiles, 6 near-copies placed after their originals, one copy of a copy."""
    profiles = varied_profiles(24)
    rows: list[tuple[Profile, bool]] = [(p, False) for p in profiles]
    edits = [
        lambda p: p.model_copy(update={"name": p.name.replace("a", "á", 1)}),
        lambda p: p.model_copy(update={"age": p.age + 1, "appearance": p.appearance.rstrip(".") + ", always."}),
        lambda p: p.model_copy(update={"personality": p.personality.replace(", and", " and")}),
    ]
    for n, source in enumerate([2, 5, 9, 13, 17, 20]):
        rows.insert(len(rows) if n % 2 else source + 3, (edits[n % 3](profiles[source]), True))
    copy_of_copy = edits[1](edits[0](profiles[2]))
    rows.append((copy_of_copy, True))
    characters = [character(f"c{index:03d}", profile) for index, (profile, _) in enumerate(rows)]
    return characters, {c.character_id for c, (_, planted) in zip(characters, rows, strict=True) if planted}


@pytest.fixture(scope="module")
def embed():
    from opencharacter.models.embedder import Embedder

    return Embedder()


def test_lsh_finds_what_the_exact_method_finds_and_keeps_the_first(embed):
    characters, planted = planted_set()
    exact = near_duplicate_profiles(characters, 0.95, method="exact", embed=embed)
    embedded: list[int] = []
    approximate = near_duplicate_profiles(
        characters, 0.95, method="lsh", embed=lambda texts: embedded.append(len(texts)) or embed(texts)
    )
    assert embedded and embedded[0] < len(characters) / 2  # only the profiles in candidate pairs
    assert set(exact) == planted  # the exact method's verdict on this set is the planted copies
    assert approximate == exact  # same drops, same kept partner for each
    order = {c.character_id: n for n, c in enumerate(characters)}
    assert all(order[kept] < order[gone] for gone, kept in approximate.items())
    assert all(kept not in approximate for kept in approximate.values())  # partners are survivors
    # Reversed input: in each group the last copy now comes first and survives; order decides, not text.
    groups: dict[str, set[str]] = {}
    for gone, kept in approximate.items():
        groups.setdefault(kept, {kept}).add(gone)
    latest = {max(group, key=order.__getitem__) for group in groups.values()}
    reverse = near_duplicate_profiles(characters[::-1], 0.95, method="lsh", embed=embed)
    assert set(reverse) == set().union(*groups.values()) - latest
    distinct = [c for c in characters if c.character_id not in planted]
    assert near_duplicate_profiles(distinct, 0.95, method="lsh", embed=embed) == {}


def _same_vector(texts):
    """Every profile at cosine 1 with every other: the decision is then the word-set Jaccard alone."""
    import numpy as np

    return np.ones((len(texts), 4), dtype=np.float32) / 2.0


def test_lsh_drops_only_confirmed_word_sharing_pairs_and_misses_none_above_0_8():
    characters = [character(f"c{n:03d}", p) for n, p in enumerate(varied_profiles(60, seed=9))]
    words = [profile_words(c.character) for c in characters]
    dropped = near_duplicate_profiles(characters, 0.95, method="lsh", candidates=0.7, embed=_same_vector)
    position = {c.character_id: n for n, c in enumerate(characters)}
    assert dropped, "the set should hold some pairs above 0.7 for the test to mean anything"
    for gone, kept in dropped.items():  # LSH proposals below the bar are confirmed away
        assert position[kept] < position[gone] and kept not in dropped
        assert jaccard(words[position[gone]], words[position[kept]]) >= 0.7
    for n, c in enumerate(characters):  # P(miss at 0.8) ≈ 0.002 per pair
        if c.character_id not in dropped:
            assert not any(
                jaccard(words[n], words[j]) >= 0.8 for j in range(n) if characters[j].character_id not in dropped
            )
    assert "name" not in profile_words(characters[0].character) and "personality" not in words[0]


def templated(count: int, templates: int = 4) -> list[Character]:
    """`count` profiles from a few templates that differ in one or two words: a weak teacher's output."""
    rng = random.Random(7)
    base = varied_profiles(templates, seed=11)
    out = []
    for n in range(count):
        profile = base[n % templates]
        profile = profile.model_copy(update={"age": 20 + rng.randrange(60), "name": f"{profile.name} {n % 7}"})
        out.append(character(f"t{n:05d}", profile))
    return out


def test_thousands_of_near_identical_profiles_stay_in_bounded_memory():
    """The first LSH version listed every candidate pair (and their vectors): 4,900 templated
    profiles needed more than 24 GB. Now only the kept profiles are held, whatever the duplicate rate."""
    import tracemalloc

    import numpy as np

    characters = templated(3000)

    def by_template(texts):  # copies of one template embed (nearly) alike, templates apart
        rows = np.zeros((len(texts), 8), dtype=np.float32)
        for row, text in enumerate(texts):
            rows[row, sum(map(ord, text.split("\n")[-1])) % 8] = 1.0
        return rows

    tracemalloc.start()
    outcome = near_duplicates(iter(characters), 0.95, method="lsh", embed=by_template)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = [c.character_id for c in characters if c.character_id not in outcome.dropped]
    assert 4 <= len(kept) <= 8 and len(outcome.dropped) == len(characters) - len(kept)
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB traced"  # measured: 3 MiB; the 3,000 profiles are ~8 MiB


def test_profiles_that_share_words_but_not_meaning_are_capped_and_say_so():
    """All word-similar yet all kept (distinct vectors): each is compared with at most MAX_CANDIDATES."""
    import numpy as np

    characters = templated(MAX_CANDIDATES + 200, templates=1)

    def distinct(texts):
        rows = np.random.default_rng(len(texts)).normal(size=(len(texts), 256)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    outcome = near_duplicates(characters, 0.95, method="lsh", embed=distinct)
    assert outcome.dropped == {} and outcome.capped >= 1
    assert f"compared with the earliest {MAX_CANDIDATES} only" in outcome.notes()[0]


def test_exact_and_lsh_agree_on_templated_profiles():
    import numpy as np

    characters = templated(700, templates=3)

    def by_template(texts):
        rows = np.zeros((len(texts), 4), dtype=np.float32)
        for row, text in enumerate(texts):
            rows[row, sum(map(ord, text.split("\n")[-1])) % 4] = 1.0
        return rows

    exact = near_duplicate_profiles(characters, 0.95, method="exact", embed=by_template)
    assert exact == near_duplicate_profiles(characters, 0.95, method="lsh", embed=by_template)
    assert len(exact) >= 690


# -- junk that used to pass ----------------------------------------------------------------------------------

REAL_ANSWERS = {
    "english": "Ah, vinaigrette! Three parts oil to one part vinegar, a spoon of mustard, salt, and whisk hard.",
    "python": "Here you go:\n```python\ndef f(items):\n    return {k: v for k, v in items if k}\n"
    "print(f'{SIZE_LIMIT}')\n```",
    "unfenced code": 'Use printf("%d\\n", strlen(s)); then call xmlHttpRequest.open() and check res.status.',
    "latex": "The area is $\\frac{1}{2}ab$ and $x^{2}$ grows; in LaTeX write \\text{area} and \\begin{align}.",
    "shell": "Set it with export PATH=${HOME}/bin:$PATH and echo ${PATH} to check, then a set {1, 2, 3}.",
    "rest": "Call GET /users/{user_id}/orders with your token, and the server answers with JSON.",
    "german": "Die Donaudampfschifffahrtsgesellschaft und das Bundesverfassungsgericht sind lange Wörter, "
    "aber ganz normale Sätze im Deutschen.",
    "french": "Je garde le phare depuis trente ans ; chaque soir je monte les marches et j'allume la lanterne.",
    "chinese": "我在灯塔工作了三十年，每天晚上爬上台阶点亮灯。海风很冷，但我喜欢这里的安静。",
    "russian": "Я тридцать лет работала смотрителем маяка и каждый вечер зажигала фонарь.",
    "vietnamese": "Tôi đã làm người gác hải đăng ba mươi năm, mỗi tối tôi leo lên và thắp đèn.",
    "long words": "The longest word I know is pneumonoultramicroscopicsilicovolcanoconiosis, and I once "
    "took the train to Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch in Wales.",
    "czech": "Strč prst skrz krk, říkáme v Čechách, a pak se smějeme, protože je to jazykolam bez samohlásek.",
}


def test_junk_filters_catch_letter_soup_and_leftovers_and_spare_real_answers():
    soup = "howtomakevinaigrettesociadeferraredenyndberhtalvegagrinafreei3 and so on"
    assert "61-letter run" in junk.non_language(soup)
    assert "look like words" in junk.non_language("xkcdv qwrtzp bnmvcx zzkrt plmnbv sdfghj wrtypl qqzxv")
    glued = "thisisnotrealtextatallreally and morewordsgluedtogetherwithoutspaces ok"
    assert "unbroken runs" in junk.non_language(glued)
    assert junk.template_leftover("{RESPONSE_2} {RESPONSE_3}") == "{RESPONSE_2}"
    assert junk.template_leftover("Sure! {{ answer }}") == "{{ answer }}"
    assert junk.template_leftover("Here is what I think: {…}") == "{…}"
    assert junk.template_leftover("Well, {character_name} never says that.") == "{character_name}"
    # Seen in rewrites by the 135M teacher when they were JSON-constrained:
    assert junk.template_leftover("{USER 1} Your favourite way to spend an evening") == "{USER 1}"
    assert junk.template_leftover("{user1} A memory that shaped you") == "{user1}"
    assert junk.template_leftover("{Author 1}, {Responses 2}") == "{Author 1}"
    assert junk.template_leftover("]} 2017-12-31T14:56:08 by Lena in San Juan").strip() == "]}"
    for label, text in REAL_ANSWERS.items():
        assert junk.non_language(text) is None, label
        assert junk.template_leftover(text) is None, label


def test_copied_share_catches_verbatim_and_near_verbatim_rewrites_only():
    original = "To make a vinaigrette, whisk three parts olive oil with one part vinegar, add mustard and salt."
    assert junk.copied_share(original, original) == 1.0
    assert junk.copied_share("Ah, dear. " + original, original) >= 0.8  # the default threshold
    rewritten = "Ah, the tide waits for no one! I whisk my oil and vinegar like my mother did, three to one, child."
    assert junk.copied_share(rewritten, original) < 0.3
    code = "```python\nprint(sum(range(10)))\n```"
    assert junk.copied_share("Ahoy! Here is the spell, sailor:\n" + code, "Use this:\n" + code) is None
    assert junk.copied_share("Sure.", "Yes.") is None  # too short to judge


def test_every_filter_is_reported_with_zero_counts_and_new_ones_count(tmp_path):
    instructions = tmp_path / "alpaca.jsonl"
    original = "To make a vinaigrette, whisk three parts olive oil with one part vinegar, add mustard and salt."
    instructions.write_text(json.dumps({"instruction": "How do I make vinaigrette?", "output": original}) + "\n")
    question = "How do I make vinaigrette?"
    turns = [ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=original)]
    question_id = Instruction.make_id(turns)
    store = RunStore(tmp_path / "run")
    store.put_record("profiles", "c1", "0", character("c1"))
    rows = [
        dialogue("d1", GOOD),
        dialogue("d2", "howtomakevinaigrettesociadeferraredenyndberhtalvegagrinafreei3"),
        dialogue("d3", "{RESPONSE_2} {RESPONSE_3} and then some more words"),
        dialogue("d4", "Ah, dear. " + original).model_copy(update={"strategy": "rewrite", "question_id": question_id}),
        dialogue("d5", GOOD).model_copy(update={"strategy": "rewrite", "question_id": question_id}),
    ]
    for index, d in enumerate(rows):
        store.put_record("dialogues", d.dialogue_id, f"{index}", d)
    store.set_meta("commands", [{"command": "synthesize", "synthesis": {"instructions": [str(instructions)]}}])
    store.close()
    _, report = apply_filters(tmp_path / "run", FiltersConfig(near_duplicate_profiles=None, break_character=False))
    assert report.dialogues_out == 2
    assert report.removed["non-language text"] == 1 and report.removed["template leftover"] == 1
    assert report.removed["rewrite copies the original answer"] == 1
    for zero in ["empty answer", "copies 10+ consecutive words of the profile", "answer longer than 6000 characters"]:
        assert report.removed[zero] == 0 and zero in report.removed
    assert "off: near_duplicate_profiles" in report.notes and "off: break_character" in report.notes
    # The instruction file moved: the rewrites are kept, and the report says they were not checked.
    instructions.unlink()
    _, report = apply_filters(tmp_path / "run", FiltersConfig(near_duplicate_profiles=None))
    assert report.removed["rewrite copies the original answer"] == 0 and report.dialogues_out == 3
    assert any("2 rewrite dialogues not checked" in note and "alpaca.jsonl" in note for note in report.notes)
