"""The account of a run: one entry per input, written as JSON by ``--report``, and what each failure means.

Failures are sorted by what they mean, not by where they were raised
(:func:`failure_kind`), and each kind has one rule:

- ``input``: the input is bad, or changed, or the settings cannot make it:
  resuming would fail the same way, so the work folder is removed;
- ``resource``: a resource failed (no space, quota, I/O error, read-only, a
  lost worker): every finished segment is kept, only the piece that failed is
  removed, and a rerun resumes;
- ``interrupted``: SIGINT, SIGTERM or SIGHUP: everything finished is kept, the
  report is written, and vsr exits 130, 143 or 129.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vsr import __version__
from vsr.errors import Interrupted, UsageError, VsrError, WriteError, resource_failure, shown
from vsr.files import write_atomic

FailureKind = Literal["input", "resource", "interrupted"]


def failure_kind(exc: BaseException) -> FailureKind:
    """What a failure means for the work done so far (see the module's docstring)."""
    if isinstance(exc, Interrupted):
        return "interrupted"
    if isinstance(exc, WriteError) or resource_failure(exc):
        return "resource"
    return "input"


def failure_message(name: str, exc: BaseException) -> str:
    """One line for a failed input, whatever was raised."""
    if isinstance(exc, VsrError | UsageError):
        return str(exc)
    if isinstance(exc, OSError):  # what the file system said
        return f"{shown(exc.filename or name)}: {exc.strerror or exc}"
    if os.environ.get("VSR_DEBUG"):
        raise exc
    return f"{name}: internal error: {type(exc).__name__}: {exc}"


@dataclass
class Entry:
    """One line of the report: an input and what became of it.

    ``status``: ``done``, ``skipped`` (done earlier with these settings),
    ``busy`` (another run holds it, or it is still being written),
    ``failed``, ``interrupted``, or ``pending`` (an interruption came first).
    ``frames``: frames in the output, or, for a file left unfinished, frames
    finished and kept for the next run (``resumable``).
    """

    input: str
    status: str
    output: str | None = None
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    resumed_at: int = 0
    resumable: bool = False
    #: the exit code this failure means on its own (2: a usage error); not in the report
    code: int = field(default=0, repr=False)

    @classmethod
    def failed(cls, input_path: object, error: str, output: object = None, **more: Any) -> Entry:
        return cls(shown(input_path), "failed", None if output is None else shown(output), error, **more)

    @classmethod
    def of_failure(cls, input_path: object, exc: BaseException, output: object = None, **more: Any) -> Entry:
        """The entry of an input whose run raised ``exc``: one line, whatever it was."""
        code = getattr(exc, "exit_code", 1)
        return cls.failed(input_path, failure_message(shown(input_path), exc), output, code=code, **more)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "code"}


@dataclass
class Report:
    """The machine-readable account of a run (``--report FILE``)."""

    preset: str
    entries: list[Entry] = field(default_factory=list)
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    interrupted: Interrupted | None = None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts

    def exit_code(self) -> int:
        """0: all done or skipped (or busy); 1: some failed (2: one input, refused for how vsr was called);
        128 + signal: interrupted."""
        if self.interrupted is not None:
            return self.interrupted.exit_code
        failed = [e for e in self.entries if e.status == "failed"]
        if len(self.entries) == 1 and failed:
            return failed[0].code or 1
        return 1 if failed else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "vsr_version": __version__,
            "preset": self.preset,
            "started": self.started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "interrupted": self.interrupted is not None,
            "signal": self.interrupted.signal_name if self.interrupted is not None else None,
            "counts": self.counts(),
            "exit_code": self.exit_code(),
            "files": [e.as_dict() for e in self.entries],
        }

    def write(self, path: Path) -> None:
        try:
            write_atomic(path, (json.dumps(self.as_dict(), indent=2) + "\n").encode())
        except OSError as exc:
            raise VsrError(f"{shown(path)}: cannot write the report: {exc.strerror or exc}") from None
