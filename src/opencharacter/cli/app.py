"""The root `opencharacter` command: registers command groups and turns errors into one clear line."""

from __future__ import annotations

import sys

import click
import typer

from opencharacter import __version__
from opencharacter.cli import chat, demo, evaluate, merge, recipe, serve, synth, train
from opencharacter.errors import OpenCharacterError

app = typer.Typer(
    name="opencharacter",
    help="Synthetic personas → character profiles → in-character dialogues → role-play models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"traceback": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"opencharacter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    traceback: bool = typer.Option(False, "--traceback", help="Show the full traceback on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["traceback"] = traceback


app.command("profiles")(synth.profiles)
app.command("synthesize")(synth.synthesize_command)
app.command("run")(synth.run_command)
app.command("export")(synth.export_command)
app.command("filter")(synth.filter_command)
app.command("train")(train.train_command)
app.command("chat")(chat.chat_command)
app.add_typer(evaluate.app, name="eval")
app.command("recipe")(recipe.recipe_command)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("merge")(merge.merge_command)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except OpenCharacterError as exc:
        if _state["traceback"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Abort:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def entrypoint() -> None:
    sys.exit(main())
