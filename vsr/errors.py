"""The one exception type for user-facing failures."""

from __future__ import annotations

import errno
import os


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


#: Exit codes of the signals that interrupt a run: 128 + the signal's number, as a shell reports them.
SIGNAL_EXIT = {"SIGHUP": 129, "SIGINT": 130, "SIGTERM": 143}


class Interrupted(VsrError):
    """SIGINT, SIGTERM or SIGHUP: the run stops, finished work is kept; exit 130, 143 or 129 (128 + signal).

    ``consequence`` says what became of the work, in the words of the command that stopped.
    """

    def __init__(
        self,
        signal_name: str,
        consequence: str = "nothing was written under the output's name (run again to resume)",
    ) -> None:
        super().__init__(f"interrupted by {signal_name}; {consequence}", exit_code=SIGNAL_EXIT.get(signal_name, 130))
        self.signal_name = signal_name


class WriteError(VsrError):
    """A resource failed while writing (full disk, quota, I/O error, read-only): the finished work is kept."""


#: errno values that mean a resource failed, not the input: the work done so far is worth keeping.
RESOURCE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.ENOMEM}
)


def resource_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or FFmpeg's error, which carries an errno too) is a resource that failed."""
    code = getattr(exc, "errno", None)
    return isinstance(code, int) and code in RESOURCE_ERRNOS


def shown(path: object) -> str:
    """A path as printed and reported: bytes that are not UTF-8 (``\\xe9``) escaped, everything else as it is.

    Names are bytes on POSIX; Python hands the undecodable ones over as surrogate escapes, which no terminal,
    JSON reader or container tag takes. vsr keeps the real name for every file operation and escapes it only
    here.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = os.fsencode(text).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that no file name produced
            text = text.encode("utf-8", "backslashreplace").decode("ascii")
    return text


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): what vsr prints is one honest line.

    Messages quote names from files (a checkpoint's module names and keys, a
    file name); a newline or a terminal escape in one must not forge a second
    line or hide the rest.
    """
    if text.isprintable():
        return text
    text = shown(text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
