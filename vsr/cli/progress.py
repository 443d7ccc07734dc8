"""The one progress display: a rich bar on a terminal; otherwise a log line now and then (cron mail, logs).

``vsr upscale`` (frames, over every file of a run and every worker) and
``vsr train`` (steps, with the losses) both use it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

log = logging.getLogger("vsr")


class Progress:
    """Counts work done against work planned, and shows it.

    ``every``: without a terminal, a line each ``every`` units of work (0: a line a minute).
    ``quiet``: no lines without a terminal (a batch tells each file's end instead).
    """

    def __init__(self, what: str, total: int | None = None, *, every: int = 0, quiet: bool = False) -> None:
        self.what, self.total, self.every, self.quiet = what, total, every, quiet
        self.done = self.first = 0
        self.info = ""
        self.start = time.perf_counter()
        self.next_line = 60.0
        self.bar: Bar | None = None
        self.task = None
        if sys.stderr.isatty():
            self.bar = Bar(
                TextColumn(what),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(what, total=total, info="")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def plan(self, frames: int, done: int = 0) -> None:
        """``frames`` more to do, ``done`` of them done already (a resumed file)."""
        self.total = (self.total or 0) + frames
        self.first += done
        self.done += done
        self._show()

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def update(self, done: int, values: dict[str, float] | None = None) -> None:
        """``done`` so far; ``values``: up to three figures to show beside the rate (a loss, say)."""
        self.done = done
        elapsed = time.perf_counter() - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 else 0.0
        figures = " ".join(f"{k}={v:.4g}" for k, v in list((values or {}).items())[:3])
        self.info = f"{rate:.2f}/s {figures}".strip()
        self._show(line=True)

    def _show(self, line: bool = False) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=self.done, total=self.total or None, info=self.info)
            return
        if not line or self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        due = self.done % self.every == 0 if self.every else elapsed >= self.next_line
        if due:
            self.next_line = elapsed + 60
            total = f"/{self.total}" if self.total else ""
            log.info("%s %d%s, %s", self.what, self.done, total, self.info)

    def close(self) -> None:
        if self.bar is not None:
            with contextlib.suppress(OSError):  # a terminal that hung up (SIGHUP): the run's report says the rest
                self.bar.stop()
            self.bar = None
