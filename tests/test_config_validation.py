"""Config sections: what a partial setting leaves of the section's defaults."""


def test_a_partial_sampling_keeps_the_sections_other_defaults():
    """`profiles --temperature 0.9` used to reset max_tokens to Sampling's 512 (the profiles default is 400)."""
    from opencharacter.cli.options import sampling_overrides, section
    from opencharacter.config.base import build
    from opencharacter.config.synthesis import ProfilesConfig

    flags = build(ProfilesConfig, section({}, "profiles", sampling_overrides(0.9, None)), "flags").sampling
    assert (flags.temperature, flags.max_tokens) == (0.9, 400)
    yaml = build(ProfilesConfig, {"sampling": {"top_p": 0.5}}, "c.yaml").sampling
    assert (yaml.top_p, yaml.temperature, yaml.max_tokens) == (0.5, 0.7, 400)
    assert build(ProfilesConfig, {"sampling": {"max_tokens": 80}}, "c.yaml").sampling.max_tokens == 80
