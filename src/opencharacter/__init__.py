"""opencharacter: synthetic personas → character profiles → in-character dialogues → role-play models.

The public API is re-exported lazily so `import opencharacter` (and `opencharacter --help`) stays fast:
torch, transformers and friends load only when a backend that needs them is built.
"""

from __future__ import annotations

__version__ = "0.1.0"

from opencharacter.errors import (
    BackendError,
    ConfigError,
    InputError,
    MissingDependencyError,
    OpenCharacterError,
    ParseError,
)

__all__ = [
    "BackendError",
    "ConfigError",
    "InputError",
    "MissingDependencyError",
    "OpenCharacterError",
    "ParseError",
    "__version__",
]
