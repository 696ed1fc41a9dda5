"""The PersonaGym protocol: the authors' benchmark, rubrics and judge prompts, read from a checkout."""
