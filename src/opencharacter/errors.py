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


class FatalBackendError(BackendError):
    """A backend error that no retry can fix: bad credentials (401/403), an unknown model or endpoint
    (404), or a server that refuses connections before any call succeeded.

    The executor stops the whole run at once on it (items already done stay done), instead of
    recording every remaining item as failed; the CLI prints its one line and exits 1.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status, False, None)
        # BackendError.__init__ stored four args; keep the two we take so the exception pickles.
        self.args = (message, status)


class RunIncomplete(OpenCharacterError):
    """The run finished its work, but some items ended as failures: the data is not what was asked.

    Raised after the output files and the summary are written, so a script sees a non-zero exit
    (3) while a person sees what failed and that `--retry-failed` tries those items again.
    """

    exit_code = 3

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(failed, total)
        self.failed, self.total = failed, total

    def __str__(self) -> str:
        return (
            f"{self.failed} of {self.total} items failed (see failures.jsonl); "
            "rerun with --retry-failed to try them again"
        )


class Interrupted(OpenCharacterError):
    """SIGINT (Ctrl-C) or SIGTERM stopped the run; everything committed so far is kept.

    Exit status follows the shell convention 128 + signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signal_number: int = 2) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number

    def __str__(self) -> str:
        return "interrupted: rerun the same command to resume"
