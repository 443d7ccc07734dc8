"""The one exception type for user-facing failures."""

from __future__ import annotations


class VsrError(Exception):
    """A failure the user can act on: bad input, bad option, unwritable output.

    The CLI turns it into a single line on stderr and a non-zero exit code.
    ``exit_code`` 2 is reserved for usage errors (unknown preset, option or
    stage), 1 for everything else.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(VsrError):
    """A mistake in how vsr was called: unknown preset, option, stage or model."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class Interrupted(VsrError):
    """SIGINT or SIGTERM: the run stops, partial output is removed, exit code 130."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(
            f"interrupted by {signal_name}; nothing was written under the output's name (run again to resume)",
            exit_code=130,
        )


class WriteError(VsrError):
    """Writing the output failed (full disk, unwritable destination); the work done so far is kept."""


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): what vsr prints is one honest line.

    Messages quote names from files (a checkpoint's module names and keys, a
    file name); a newline or a terminal escape in one must not forge a second
    line or hide the rest.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
