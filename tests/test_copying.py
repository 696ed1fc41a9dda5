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
