"""`opencharacter recipe`: the paper's experiment from one YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencharacter.cli import options as opt
from opencharacter.cli.report import console
from opencharacter.config import RecipeConfig, build, load_yaml, merge


def recipe_command(
    config: Annotated[Path, typer.Argument(help="Recipe YAML (see examples/recipe-cpu.yaml).")],
    out: Annotated[Path | None, typer.Option("--out", help="Override the output directory.")] = None,
    quiet: opt.Quiet = False,
) -> None:
    """Split personas, make G and R data, train a student per strategy, evaluate on held-out characters."""
    overrides = {"out": str(out)} if out is not None else {}
    recipe = build(RecipeConfig, merge(load_yaml(config), overrides), str(config))
    from opencharacter.recipe.experiment import render_markdown, run_recipe

    results = run_recipe(recipe, quiet=quiet)
    console.print(render_markdown(results))
    console.print(f"results: {Path(recipe.out) / 'results.md'} and results.json")
