"""GRPO's rewards on hand-made answers: a profile recital must not pay, an in-character answer must.

Pure functions (BM25, the copy measures, the filters' rules) and the judge reward through the engine
with the fake backend, including a judge that is down; no model is trained here.
"""

from __future__ import annotations

import pytest

from opencharacter.config import TrainConfig, build
from opencharacter.config.grpo import GRPOSettings, RewardSpec
from opencharacter.errors import ConfigError
from opencharacter.registry import REWARDS
from opencharacter.train.rewards import RewardContext, answer_text, build_rewards, copy_penalty, format_problems

PROFILES = {
    "ines": "Name: Ines Garcia\nAge: 61\nGeneral Experience: Ines keeps the Finisterre lighthouse on the rocky coast "
    "and restores antique pendulum clocks in her workshop.\nPersonality: patient, precise, fond of tide tables.",
    "bo": "Name: Bo Landry\nAge: 34\nGeneral Experience: Bo plays jazz drums with a brass band in New Orleans "
    "and teaches rhythm to kids at the community centre.\nPersonality: loud, warm, always tapping on something.",
    "mei": "Name: Mei Chen\nAge: 45\nGeneral Experience: Mei studies mosses and liverworts in a damp university "
    "greenhouse and counts their spores under a microscope.\nPersonality: quiet, curious, loves rainy days.",
    "tom": "Name: Tom Reed\nAge: 72\nGeneral Experience: Tom sailed merchant ships round Cape Horn and now paints "
    "harbour scenes in watercolour.\nPersonality: gruff, nostalgic, tells long sea stories.",
}
RECITAL = (
    "I am Ines Garcia. Ines keeps the Finisterre lighthouse on the rocky coast and restores antique pendulum clocks "
    "in her workshop."
)
IN_CHARACTER = (
    "Most evenings I climb to the lamp room and watch the beam sweep the water; downstairs a dozen old clocks "
    "tick while I mend one more escapement."
)
QUESTION = "What do you do on a quiet evening?"


def _reward(name: str, **settings):
    (func,), _ = build_rewards([RewardSpec(name=name, **settings)], RewardContext(PROFILES, seed=0))
    return func


def _call(func, answers: list[str], character: str = "ines", **extra):
    n = len(answers)
    return func(
        prompts=[[{"role": "user", "content": QUESTION}]] * n,
        completions=[[{"role": "assistant", "content": a}] for a in answers],
        character_id=[character] * n,
        profile=[PROFILES[character]] * n,
        persona=["A lighthouse keeper who restores clocks."] * n,
        question=[QUESTION] * n,
        **extra,
    )


def _recital(character: str) -> str:
    """What a reward-farming policy says: its name, then its profile's experience line, verbatim."""
    lines = dict(line.split(": ", 1) for line in PROFILES[character].splitlines())
    return f"I am {lines['Name']}. {lines['General Experience']}"


def test_a_recital_scores_low_on_the_copy_masked_fidelity_and_high_on_the_copy_penalty():
    masked = _reward("fidelity", signal="lexical", distractors=3)
    unmasked = _reward("fidelity", signal="lexical", distractors=3, masked=False)
    recitals = {c: _call(masked, [_recital(c)], c)[0] for c in PROFILES}
    # Unmasked, a recital identifies its character perfectly: the reward a policy would learn to farm.
    assert all(_call(unmasked, [_recital(c)], c) == [1.0] for c in PROFILES)
    # Masked, nothing of its own is left (the name goes too): no reward at all, while an answer in
    # character, sharing words but no phrase with its profile, still ranks first.
    assert recitals == dict.fromkeys(PROFILES, 0.0)
    assert _call(masked, [IN_CHARACTER]) == [1.0]

    penalties = [copy_penalty(a, PROFILES["ines"]) for a in (RECITAL, IN_CHARACTER)]
    assert penalties[0] > 1.0  # nearly every trigram copied, and the opening names the character
    assert penalties[1] == 0.0
    assert _call(_reward("copy_penalty"), [RECITAL, IN_CHARACTER]) == [-penalties[0], 0.0]


def test_fidelity_distractors_are_seeded_and_both_signals_average():
    both = _reward("fidelity", signal="both", distractors=3)
    lexical = _reward("fidelity", signal="lexical", distractors=3)
    assert _call(both, [IN_CHARACTER]) == _call(both, [IN_CHARACTER])
    # The embedding signal (MiniLM) is a real model: only check that mixing it in keeps a reciprocal rank.
    value = _call(both, [IN_CHARACTER])[0]
    assert 0.25 <= value <= 1.0 and _call(lexical, [IN_CHARACTER]) == [1.0]


def test_format_follows_the_filters_rules():
    fmt = _reward("format", min_chars=20, max_chars=200)
    answers = [
        IN_CHARACTER,
        "As an AI language model, I do not have evenings.",
        "Evenings are for {RESPONSE_2} and the lamp.",
        "Short.",
        "word " * 100,
    ]
    assert _call(fmt, answers) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert format_problems("Short.", 20, 200) == ["length 6 outside [20, 200]"]


def test_the_judge_reward_scores_through_the_engine_and_counts_a_judge_that_is_down(tmp_path):
    context = RewardContext(PROFILES, seed=0, cache_dir=tmp_path / "up")
    (judge,), _ = build_rewards([RewardSpec(name="judge", judge={"backend": "fake"})], context)
    logged: dict[str, float] = {}
    scores = _call(judge, [IN_CHARACTER, RECITAL], log_metric=logged.__setitem__)
    assert all(0.0 <= s <= 1.0 for s in scores) and context.failures == {"judge": 0}
    assert logged["judge/failed"] == 0.0 and "reward_seconds/judge" in logged

    down = RewardContext(PROFILES, seed=0, cache_dir=tmp_path / "down")
    spec = RewardSpec(name="judge", judge={"backend": "fake", "max_retries": 0, "options": {"fail_every": 1}})
    (judge,), _ = build_rewards([spec], down)
    logged.clear()
    assert _call(judge, [IN_CHARACTER, RECITAL], log_metric=logged.__setitem__) == [None, None]
    assert down.failures == {"judge": 2} and logged["judge/failed"] == 2.0


def test_a_reward_added_by_name_is_built_and_named_for_the_logs():
    def brevity(settings, context):
        def reward(completions, **_):
            return [1.0 / len(answer_text(c).split()) for c in completions]

        return reward

    REWARDS.register("brevity_test", brevity)
    try:
        funcs, weights = build_rewards([RewardSpec(name="brevity_test", weight=-2.0)], RewardContext(PROFILES))
        assert funcs[0].__name__ == "brevity_test" and weights == [-2.0]
        assert _call(funcs[0], ["one two"]) == [0.5]
    finally:
        REWARDS._entries.pop("brevity_test")


def test_bad_reward_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="did you mean 'fidelity'"):
        RewardSpec(name="fidelty")
    with pytest.raises(ConfigError, match=r"grpo reward .fidelity.*signl"):
        build_rewards([RewardSpec(name="fidelity", signl="lexical")], RewardContext(PROFILES))
    with pytest.raises(ConfigError, match="unknown task"):
        build_rewards([RewardSpec(name="judge", task="Vibes", judge={"backend": "fake"})], RewardContext(PROFILES))
    with pytest.raises(ConfigError, match="needs a judge"):
        build_rewards([RewardSpec(name="judge")], RewardContext(PROFILES))
    with pytest.raises(ConfigError, match="distinct `label`"):
        build_rewards([RewardSpec(name="format"), RewardSpec(name="format")], RewardContext(PROFILES))
    with pytest.raises(ConfigError, match="num_generations"):
        build(TrainConfig, {"method": "grpo", "grpo": {"num_generations": 1}}, "train.yaml")
    assert GRPOSettings().rewards[0].name == "fidelity"
