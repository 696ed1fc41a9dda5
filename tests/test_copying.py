"""The profile-copy measures on hand-made answers: a recital is caught, an answer in character is not."""

from opencharacter.eval.copying import (
    NOTHING_LEFT,
    copy_rate,
    mask_copied,
    measure,
    opens_with_profile,
    profile_ngrams,
)

PROFILE = (
    "Name: Ethan Alvarez\n"
    "Age: 41\n"
    "General Experience: a forensic accountant in Denver who untangles shell companies for the state.\n"
    "Personality: patient, dry-humoured, loves thousand-piece jigsaw puzzles on rainy weekends."
)
RECITAL = (
    "Ethan Alvarez here, a forensic accountant in Denver who untangles shell companies for the state, "
    "and I love thousand-piece jigsaw puzzles on rainy weekends."
)
IN_CHARACTER = (
    "Last Saturday it poured, so I spread a puzzle across the kitchen table and lost track of time. "
    "Numbers all week, edges and corners all weekend: that is how I unwind."
)


def test_a_recital_copies_most_of_its_ngrams_and_an_answer_in_character_almost_none():
    assert copy_rate(RECITAL, PROFILE) > 0.6
    assert copy_rate(IN_CHARACTER, PROFILE) == 0.0


def test_function_word_ngrams_and_field_labels_never_count_as_copying():
    grams = profile_ngrams(PROFILE)
    assert ("for", "the", "state") in grams  # one content word is enough
    assert not any("experience" in gram or "personality" in gram for gram in grams)
    assert copy_rate("and it is what it is for them", "Name: X\nPersonality: and it is what it is for them") == 0.0
    assert copy_rate("My general experience: personality matters.", PROFILE) == 0.0


def test_an_opening_that_names_the_character_or_restates_the_profile_is_flagged():
    assert opens_with_profile(RECITAL, PROFILE)
    assert opens_with_profile("Hi, I'm Ethan. Numbers are my thing.", PROFILE)
    assert opens_with_profile("A forensic accountant in Denver who untangles shell companies, that's me.", PROFILE)
    assert not opens_with_profile(IN_CHARACTER, PROFILE)


def test_masking_removes_copied_spans_and_keeps_the_rest():
    masked = mask_copied(RECITAL, PROFILE)
    assert "forensic" not in masked and "jigsaw" not in masked
    assert "here" in masked and "love" in masked
    assert mask_copied(IN_CHARACTER, PROFILE) == IN_CHARACTER
    assert mask_copied("forensic accountant in Denver", PROFILE) == NOTHING_LEFT


def test_short_answers_have_nothing_to_copy():
    assert copy_rate("Yes.", PROFILE) == 0.0
    result = measure("Sure thing.", PROFILE)
    assert result.copy_rate == 0.0 and not result.opens_with_profile


# -- in the evaluation: both fidelities copy-masked, the copy measures per answer --

FIDELITY_PROFILES = {
    "e": PROFILE,
    "c": "Name: Lea Roux\nGeneral Experience: a pastry chef who runs a bakery in Lyon, famous for croissants.",
    "a": "Name: Sam Ode\nGeneral Experience: an astronomer who studies distant galaxies with big telescopes.",
}


def test_a_recital_wins_both_fidelities_but_not_their_copy_masked_versions(tmp_path):
    from opencharacter.eval.fidelity import copy_summary, fidelity_summary, reciprocal_ranks
    from opencharacter.eval.records import Answer, FidelityResult
    from opencharacter.eval.runner import rank_fidelity

    def answer(persona, text):
        return Answer(question_id=persona, persona_id=persona, task="fidelity", question="Tell me about you.",
                      answer=text, model="m", system_prompt="s")  # fmt: skip

    recital = "A forensic accountant in Denver who untangles shell companies for the state."
    results = rank_fidelity(FIDELITY_PROFILES, [answer("e", recital), answer("c", "Croissants at six, every day.")])
    reciter = results[0]
    assert reciter.rank == 1 and reciter.lexical_rank == 1  # the recital wins the plain signals ...
    assert reciter.copy_rate == 1.0 and reciter.opens_with_profile
    # ... and has nothing left once its copied spans are masked: at chance, not first by construction.
    assert reciter.masked_rank is not None and reciter.masked_lexical_rank is not None
    assert results[1].copy_rate == 0.0 and results[1].masked_lexical_rank == results[1].lexical_rank == 1
    assert copy_summary(results) == {"answers": 2, "copy_rate": 0.5, "opens_with_profile": 0.5}
    assert fidelity_summary(results, "lexical_masked")["answers"] == 2
    (tmp_path / "fidelity.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in results))
    assert set(reciprocal_ranks(tmp_path, "embedding_masked")) == {"e", "c"}
    # An old fidelity.jsonl (before the copy measures) still loads, with no copy-masked numbers.
    old = FidelityResult.model_validate_json('{"question":"q","persona_id":"e","rank":1,"candidates":3}')
    assert old.masked_rank is None and copy_summary([old]) == {"answers": 0}


def test_answers_with_nothing_of_their_own_rank_at_chance_on_every_signal():
    from opencharacter.eval.fidelity import rank_answers
    from opencharacter.eval.lexical import LexicalScorer

    class Favours:  # a scorer that would always put the own (first) profile first
        def similarity(self, profiles, answers):
            return [[1.0] + [0.0] * (len(profiles) - 1) for _ in answers]

    for text in (NOTHING_LEFT, "Ethan Alvarez: , . and ."):  # the second: only a name and function words
        empty = [(f"q{i}", "e", text) for i in range(60)]
        for scorer in (Favours(), LexicalScorer()):
            ranks = [r.rank for r in rank_answers(scorer, FIDELITY_PROFILES, empty)]
            assert set(ranks) == {1, 2, 3}, (text, scorer)
