"""One small exception tree: "you misused it" (ConfigError, InputError) versus "the run failed".

Every exception pickles (Ray ships them between processes), so each keeps its constructor
arguments in `args` and rebuilds its message from them.
"""

from __future__ import annotations


class OpenCharacterError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(OpenCharacterError):
    """A configuration value or option is wrong; the message says what to change."""

    exit_code = 2


class InputError(OpenCharacterError):
    """An input file is malformed; names the file, the line (1-based, when known) and the problem."""

    exit_code = 2

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        super().__init__(path, line, problem)
        self.path, self.line, self.problem = path, line, problem

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.problem}"


class BackendError(OpenCharacterError):
    """A model backend call failed; `retryable` tells the engine whether another try may succeed."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status, retryable, retry_after)
        self.message, self.status, self.retryable, self.retry_after = message, status, retryable, retry_after

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


class ParseError(OpenCharacterError):
    """Model output could not be turned into the record a stage needs; keeps the raw text."""

    def __init__(self, message: str, raw: str = "", record_id: str | None = None) -> None:
        super().__init__(message, raw, record_id)
        self.message, self.raw, self.record_id = message, raw, record_id

    def __str__(self) -> str:
        return self.message


class MissingDependencyError(OpenCharacterError):
    """An optional extra is not installed; the message is the exact pip command that fixes it."""

    exit_code = 2

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(package, extra)
        self.package, self.extra = package, extra

    def __str__(self) -> str:
        return f"{self.package} is not installed; run: pip install 'opencharacter[{self.extra}]'"
