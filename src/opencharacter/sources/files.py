"""Input files read twice, never held: once to check and count them, then streamed at each use.

A paper-scale run reads 300k instructions and 20k personas. Holding them as records costs more
memory than the rest of the run together, and the stages need them one at a time, so a command
scans each file first (every error stops it here, before a run directory is made, and the counts
give the progress bars their totals), then iterates it again, in the same order, where it is used.
Only the counts stay between the two passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from opencharacter.records import Instruction, Persona
from opencharacter.sources.instructions import iter_instructions
from opencharacter.sources.personas import iter_personas
from opencharacter.sources.reader import LoadReport

if TYPE_CHECKING:
    from opencharacter.config import InstructionSource


class _ScannedFile:
    """A source read once to count it; `iter()` reads it again, `len()` is what the first read kept."""

    count = 0

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.count} records)"  # type: ignore[attr-defined]


class InstructionFile(_ScannedFile):
    """An instruction file, checked and counted; `iter()` reads it again, `len()` is its kept count."""

    def __init__(
        self,
        path: str | Path,
        *,
        fmt: str = "auto",
        skip_invalid: bool = False,
        limit: int | None = None,
        source_name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._options = {"fmt": fmt, "skip_invalid": skip_invalid, "limit": limit, "source_name": source_name}
        instructions, self.report = iter_instructions(self.path, **self._options)  # type: ignore[arg-type]
        self.count = 0
        self.fully_answered = 0  # instructions with an answer for every user turn: what `rewrite` applies to
        for instruction in instructions:
            self.count += 1
            self.fully_answered += instruction.fully_answered

    def __iter__(self) -> Iterator[Instruction]:
        instructions, _ = iter_instructions(self.path, **self._options)  # type: ignore[arg-type]
        return instructions


class PersonaFile(_ScannedFile):
    """A persona source (file, saved dataset, cards), checked and counted; `iter()` reads it again."""

    def __init__(
        self,
        path: str | Path,
        *,
        fmt: str = "auto",
        column: str | None = None,
        skip_invalid: bool = False,
        limit: int | None = None,
    ) -> None:
        self.path = path
        self._options = {"fmt": fmt, "column": column, "skip_invalid": skip_invalid, "limit": limit}
        personas, self.report = iter_personas(path, **self._options)  # type: ignore[arg-type]
        self.count = sum(1 for _ in personas)

    def __iter__(self) -> Iterator[Persona]:
        personas, _ = iter_personas(self.path, **self._options)  # type: ignore[arg-type]
        return personas


LoadedSource = tuple["InstructionSource", Sequence[Instruction], LoadReport]
"""An instruction source, its instructions (an `InstructionFile`: counted, streamed at each use) and
what reading it found."""


def load_instruction_sources(sources: Sequence[InstructionSource], skip_invalid: bool) -> list[LoadedSource]:
    """Each source checked and counted now (an error stops the command here), streamed when used."""
    loaded: list[LoadedSource] = []
    for source in sources:
        instructions = InstructionFile(
            source.path, fmt=source.format, skip_invalid=skip_invalid, limit=source.limit, source_name=source.name
        )
        loaded.append((source, instructions, instructions.report))
    return loaded


__all__ = ["InstructionFile", "LoadReport", "LoadedSource", "PersonaFile", "load_instruction_sources"]
