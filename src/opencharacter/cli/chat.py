"""`opencharacter chat`: talk to a model as a character, interactively or one message at a time."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from opencharacter.chat.characters import resolve_character
from opencharacter.chat.session import ChatModel, ChatSession, system_prompt_version_for
from opencharacter.cli import options as opt
from opencharacter.errors import OpenCharacterError
from opencharacter.models.paths import check_model_spec, require_exists
from opencharacter.records import Sampling

HELP = "commands: /reset (clear history), /character SPEC (switch), /save FILE, /quit"
# Control characters (ANSI/OSC escapes among them) from a card, a run or a model never reach the
# terminal raw: they could retitle it, rewrite what is shown, or worse. Newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    return _CONTROL.sub("", text)


def chat_command(
    character: Annotated[
        str, typer.Option("--character", help="Id or name from --run, a card .json/.png, or a one-line persona.")
    ],
    model: opt.Model = None,
    run: Annotated[Path | None, typer.Option("--run", help="Run directory to look characters up in.")] = None,
    message: Annotated[str | None, typer.Option("--message", help="Send one message, print the answer, exit.")] = None,
    backend: opt.Backend = None,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = None,
    config: opt.ConfigFile = None,
    temperature: opt.Temperature = None,
    max_tokens: opt.MaxTokens = None,
) -> None:
    """Chat in character with a local model or adapter, or any OpenAI-compatible endpoint."""
    overrides = opt.backend_overrides(backend, model, base_url, api_key_env, None, None)
    _, _, backend_config = opt.load_config(config, overrides)
    if run is not None:
        require_exists(run, "--run", "run directory")
    sampling = Sampling(**{"temperature": 0.7, "max_tokens": 256, **opt.sampling_overrides(temperature, max_tokens)})
    chat_model = ChatModel(backend_config)
    try:
        # A local backend loads --model from files here; for a server it is only the name it serves.
        if chat_model.backend.capabilities.local:
            check_model_spec(backend_config.model)
        session = ChatSession(
            chat_model,
            resolve_character(character, run),
            sampling,
            system_prompt_version_for(backend_config.model),
        )
        if message is not None:
            for piece in session.reply(message):
                sys.stdout.write(printable(piece))
            sys.stdout.write("\n")
            return
        typer.echo(f"chatting with {printable(session.character.label)} — {HELP}", err=True)
        interact(session, run)
    finally:
        chat_model.close()


def interact(session: ChatSession, run: Path | None) -> None:
    """The read-answer loop. A failed command or answer is reported and the chat goes on: one
    mistyped `/character` or a server hiccup should not throw away the conversation."""
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if text in ("/quit", "/exit"):
            break
        try:
            _handle(session, run, text)
        except (OpenCharacterError, OSError) as exc:
            # One line, whatever the error carries (a card's InputError names the file and problem).
            typer.echo(f"error: {printable(' '.join(str(exc).split()))}", err=True)


def _handle(session: ChatSession, run: Path | None, text: str) -> None:
    if not text:
        return
    if text == "/reset":
        session.reset()
        typer.echo("(history cleared)", err=True)
    elif text.startswith("/character "):
        session.set_character(resolve_character(text.split(" ", 1)[1], run))
        typer.echo(f"(now chatting with {printable(session.character.label)})", err=True)
    elif text.startswith("/save"):
        target = Path(text.split(" ", 1)[1] if " " in text else "chat.json")
        typer.echo(f"(saved to {session.save(target)})", err=True)
    elif text.startswith("/"):
        typer.echo(HELP, err=True)
    else:
        sys.stdout.write(f"{printable(session.character.label)}> ")
        for piece in session.reply(text):
            sys.stdout.write(printable(piece))
            sys.stdout.flush()
        sys.stdout.write("\n")
