"""Instruction readers: Alpaca, LIMA, Persona Hub `instruction.jsonl`, ShareGPT and OpenAI `messages`.

Each record becomes an `Instruction`: alternating user/assistant turns. Formats are detected per
record from their keys unless one is forced, so a mixed file still reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from opencharacter.errors import ConfigError, InputError
from opencharacter.records import ChatMessage, Instruction
from opencharacter.sources.reader import InvalidHandler, LoadReport, check_limit, nothing_read, read_json_items

_USER_PROMPT_PREFIX = re.compile(r"^\s*user\s*prompt\s*:\s*", re.IGNORECASE)
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
}


class RecordProblem(ValueError):
    """A record that does not fit its format; becomes an InputError with file and line."""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordProblem(f"{what} must be a string, got {type(value).__name__}")
    return value


def _alpaca(item: dict[str, Any]) -> list[tuple[str, str]]:
    instruction = _text(item.get("instruction"), "'instruction'")
    extra = _text(item.get("input", ""), "'input'")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    turns = [("user", prompt)]
    output = item.get("output")
    if output is not None and _text(output, "'output'").strip():
        turns.append(("assistant", output))
    return turns


def _lima(item: dict[str, Any]) -> list[tuple[str, str]]:
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise RecordProblem("'conversations' must be a non-empty list of strings (user, assistant, user, …)")
    turns = []
    for index, text in enumerate(conversations):
        role = "user" if index % 2 == 0 else "assistant"
        turns.append((role, _text(text, f"'conversations' item {index + 1}")))
    return turns


def _personahub(item: dict[str, Any]) -> list[tuple[str, str]]:
    prompt = _USER_PROMPT_PREFIX.sub("", _text(item.get("synthesized text"), "'synthesized text'"), count=1)
    return [("user", prompt.strip())]


def _sharegpt(item: dict[str, Any]) -> list[tuple[str, str]]:
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise RecordProblem("'conversations' must be a non-empty list of {from, value} objects")
    turns = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RecordProblem(f"'conversations' item {index + 1} must be an object with 'from' and 'value'")
        speaker = str(turn["from"]).lower()
        if speaker == "system":
            continue  # our own system prompt replaces it
        if speaker not in _SHAREGPT_ROLES:
            raise RecordProblem(f"'conversations' item {index + 1}: unknown speaker {turn['from']!r}")
        turns.append((_SHAREGPT_ROLES[speaker], _text(turn["value"], f"'conversations' item {index + 1} value")))
    return turns


def _messages(item: dict[str, Any]) -> list[tuple[str, str]]:
    messages = item.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RecordProblem("'messages' must be a non-empty list of {role, content} objects")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise RecordProblem(f"'messages' item {index + 1} must be an object with 'role' and 'content'")
        if message["role"] == "system":
            continue
        if message["role"] not in ("user", "assistant"):
            raise RecordProblem(f"'messages' item {index + 1}: unknown role {message['role']!r}")
        turns.append((message["role"], _text(message["content"], f"'messages' item {index + 1} content")))
    return turns


_PARSERS: dict[str, Callable[[dict[str, Any]], list[tuple[str, str]]]] = {
    "alpaca": _alpaca,
    "lima": _lima,
    "personahub": _personahub,
    "sharegpt": _sharegpt,
    "messages": _messages,
}
INSTRUCTION_FORMATS: tuple[str, ...] = ("auto", *_PARSERS)


def detect_format(item: dict[str, Any]) -> str:
    if "messages" in item:
        return "messages"
    if "synthesized text" in item:
        return "personahub"
    if "instruction" in item:
        return "alpaca"
    if "conversations" in item:
        conversations = item["conversations"]
        first = conversations[0] if isinstance(conversations, list) and conversations else None
        return "sharegpt" if isinstance(first, dict) else "lima"
    raise RecordProblem(
        "unrecognised record: expected Alpaca 'instruction', LIMA/ShareGPT 'conversations', "
        "Persona Hub 'synthesized text' or 'messages'"
    )


def iter_instructions(
    source: str | Path,
    *,
    fmt: str = "auto",
    skip_invalid: bool = False,
    limit: int | None = None,
    source_name: str | None = None,
) -> tuple[Iterator[Instruction], LoadReport]:
    """Instructions one at a time, and the report that counts them (complete once the iterator is spent).

    Same arguments and errors as `load_instructions`; options are checked now, the file as it is
    read (line by line for JSON Lines). Only the 64-bit question ids seen are kept, so a 300k-line
    file streams in flat memory.
    """
    if fmt not in INSTRUCTION_FORMATS:
        raise ConfigError(f"unknown instruction format {fmt!r}; choose one of {', '.join(INSTRUCTION_FORMATS)}")
    check_limit(limit)
    path = Path(source)
    report = LoadReport(str(path))
    return _instructions(path, fmt, skip_invalid, limit, source_name or path.stem, report), report


def load_instructions(
    source: str | Path,
    *,
    fmt: str = "auto",
    skip_invalid: bool = False,
    limit: int | None = None,
    source_name: str | None = None,
) -> tuple[list[Instruction], LoadReport]:
    """Read an instruction file; `source_name` labels the dialogues made from it (default: file stem)."""
    instructions, report = iter_instructions(
        source, fmt=fmt, skip_invalid=skip_invalid, limit=limit, source_name=source_name
    )
    return list(instructions), report


def _instructions(
    path: Path, fmt: str, skip_invalid: bool, limit: int | None, name: str, report: LoadReport
) -> Iterator[Instruction]:
    handler = InvalidHandler(report, skip_invalid)
    seen: set[int] = set()
    for line, item in read_json_items(path, handler):
        try:
            if not isinstance(item, dict):
                raise RecordProblem(f"expected a JSON object, got {type(item).__name__}")
            pairs = _PARSERS[fmt if fmt != "auto" else detect_format(item)](item)
            if not pairs:
                raise RecordProblem("no user or assistant turns")
            turns = [ChatMessage(role=role, content=text) for role, text in pairs]  # type: ignore[arg-type]
            instruction = Instruction(question_id=Instruction.make_id(turns), source=name, turns=turns)
        except RecordProblem as exc:
            handler(InputError(str(path), line, str(exc)))
            continue
        except ValidationError as exc:
            handler(InputError(str(path), line, str(exc.errors()[0]["msg"]).removeprefix("Value error, ")))
            continue
        key = int(instruction.question_id, 16)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        report.kept += 1
        yield instruction
        if limit is not None and report.kept >= limit:
            return
    if report.kept == 0:
        raise InputError(str(path), None, nothing_read("instructions", report))
