"""Readers that turn user files (Persona Hub, Alpaca, LIMA, ShareGPT, messages, …) into records.

`load_*` return a list; `iter_*` take the same arguments and stream (for 100k+ line files);
`InstructionFile` / `PersonaFile` check and count a file once, then stream it again at each use.
"""

from opencharacter.sources.files import InstructionFile, PersonaFile
from opencharacter.sources.instructions import INSTRUCTION_FORMATS, iter_instructions, load_instructions
from opencharacter.sources.personas import PERSONA_FORMATS, iter_personas, load_personas
from opencharacter.sources.reader import LoadReport

__all__ = [
    "INSTRUCTION_FORMATS",
    "PERSONA_FORMATS",
    "InstructionFile",
    "LoadReport",
    "PersonaFile",
    "iter_instructions",
    "iter_personas",
    "load_instructions",
    "load_personas",
]
