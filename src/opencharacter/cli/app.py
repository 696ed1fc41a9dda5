"""The root `opencharacter` command: registers command groups and turns errors into one clear line."""

from __future__ import annotations

import errno
import sqlite3
import sys
from typing import Any

import typer

from opencharacter import __version__
from opencharacter.cli import batch, chat, demo, evaluate, merge, recipe, serve, synth, train
from opencharacter.cli.importer import import_command
from opencharacter.cli.init import init_command
from opencharacter.cli.options import FLAG
from opencharacter.cli.push import push_command
from opencharacter.errors import Interrupted, OpenCharacterError

INTERRUPTED = "interrupted: rerun the same command to resume"

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
app.add_typer(batch.app, name="batch")
app.command("recipe")(recipe.recipe_command)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("merge")(merge.merge_command)
app.command("import")(import_command)
app.command("push")(push_command)
app.command("init")(init_command)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's exception base, wherever this typer keeps it.

    typer up to 0.2x raises `click.ClickException`; typer 0.29 vendors click as `typer._click` and
    raises its own copy, which `except click.ClickException` does not catch. `typer.BadParameter`
    is public in both and derives from the right base, so its MRO names the class to catch.
    """
    found = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"]
    try:
        import click

        found.append(click.ClickException)
    except ImportError:  # a typer that vendors click may not install it
        pass
    return tuple(dict.fromkeys(found))


def _abort_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        found.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(dict.fromkeys(found))


def _show_usage_error(exc: Any) -> None:
    """One line (`error: …`) plus a hint naming the command's --help, instead of click's block."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # click >= 8.2: the help text *is* the answer
        exc.show()
        return
    print(f"error: {exc.format_message()}", file=sys.stderr)
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        print(f"try '{ctx.command_path} --help' for the options", file=sys.stderr)


def _interrupted(code: int = 130) -> int:
    print(INTERRUPTED, file=sys.stderr)
    return code


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)  # SQLITE_FULL: what SQLite reports for ENOSPC
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _command() -> Any:
    """The click command tree, with `--help` shown as the flag it is (typer prints `<bool>` after it)."""
    command = typer.main.get_command(app)
    _help_as_flag(command)
    return command


def _help_as_flag(command: Any) -> None:
    original = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = FLAG
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _help_as_flag(sub)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status a script can trust.

    0 success · 1 the run failed (backend, disk) · 2 misuse (options, config, input files) ·
    3 finished with failed items (RunIncomplete) · 130/143 interrupted by SIGINT/SIGTERM.
    """
    _state["traceback"] = False  # main() is also called in-process (tests): start clean each time
    try:
        result = _command()(args=argv, standalone_mode=False)
    except Interrupted as exc:
        return _interrupted(exc.exit_code)
    except OpenCharacterError as exc:
        if _state["traceback"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # raised outside click's own loop
        return _interrupted()
    except _abort_types() as exc:
        # click turns KeyboardInterrupt (and EOF at a prompt) into Abort.
        if isinstance(exc.__context__, EOFError):
            print("error: aborted (end of input)", file=sys.stderr)
            return 1
        return _interrupted()
    except _usage_error_types() as exc:
        if _state["traceback"]:
            raise
        _show_usage_error(exc)
        return int(getattr(exc, "exit_code", 2))
    except (sqlite3.OperationalError, OSError) as exc:
        if not _disk_full(exc) or _state["traceback"]:
            raise
        print(
            f"error: the disk is full ({exc}); free some space and rerun the same command: it resumes where it stopped",
            file=sys.stderr,
        )
        return 1
    # Without standalone mode click returns what it would have exited with: the command's return
    # value (None: success), or the code of a `typer.Exit` — 130 when a typer that vendors click caught Ctrl-C.
    if isinstance(result, int) and not isinstance(result, bool):
        return _interrupted() if result == 130 else result
    return 0


def entrypoint() -> None:
    sys.exit(main())
