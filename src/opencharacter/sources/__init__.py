"""Readers that turn user files (Persona Hub, Alpaca, LIMA, ShareGPT, messages, …) into records."""

from opencharacter.sources.instructions import INSTRUCTION_FORMATS, load_instructions
from opencharacter.sources.personas import PERSONA_FORMATS, load_personas
from opencharacter.sources.reader import LoadReport

__all__ = ["INSTRUCTION_FORMATS", "PERSONA_FORMATS", "LoadReport", "load_instructions", "load_personas"]
