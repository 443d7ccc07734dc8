"""Batches: many inputs (files, folders, globs) into a mirrored output tree, with a report.

One bad file never stops a batch: its error is recorded and the next file
starts. Only an interruption (SIGINT/SIGTERM) ends a batch early; the report
is written either way.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import glob
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsr import __version__
from vsr.errors import Interrupted, UsageError, VsrError
from vsr.files import write_atomic
from vsr.outputs import STATE_DIR, default_output, is_vsr_output
from vsr.run import RunResult

#: Suffixes a folder scan picks up unless --include says otherwise.
VIDEO_SUFFIXES = (
    ".mp4 .m4v .mkv .mov .avi .webm .wmv .flv .mpg .mpeg .m2v .ts .m2ts .mts .vob .3gp .ogv .mxf .y4m .gif".split()
)


@dataclass
class Item:
    """One input and where its output goes (``output_dir`` None: beside the input; ``output``: the file)."""

    input: Path
    output_dir: Path | None
    output: Path | None = None


@dataclass
class Entry:
    """One line of the report."""

    input: str
    status: str
    output: str | None = None
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    resumed_at: int = 0

    @classmethod
    def of(cls, result: RunResult) -> Entry:
        return cls(
            str(result.input),
            result.status,
            str(result.output),
            result.reason or None,
            result.frames,
            round(result.seconds, 3),
            round(result.fps, 3),
            result.resumed_at,
        )


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _scan(root: Path, include: list[str], exclude: list[str]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != STATE_DIR)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name.startswith("."):
                continue
            wanted = _matches(rel, include) if include else path.suffix.lower() in VIDEO_SUFFIXES
            if wanted and not _matches(rel, exclude) and not is_vsr_output(path):
                found.append(path)
    return found


def collect_inputs(
    inputs: list[str], output_dir: Path | None, include: list[str], exclude: list[str]
) -> tuple[list[Item], list[Entry]]:
    """The files to process, in order, and entries for inputs that do not exist.

    A folder is scanned recursively and mirrored under ``output_dir``; a file
    (named, or matched by a glob that the shell did not expand) goes straight
    into ``output_dir``. The same input listed twice is done once.
    """
    items: list[Item] = []
    missing: list[Entry] = []
    seen: set[Path] = set()

    def add(path: Path, out: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(Item(path, out))

    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            for found in _scan(path, include, exclude):
                rel_dir = found.parent.relative_to(path)
                add(found, output_dir / rel_dir if output_dir is not None else None)
        elif path.exists():
            add(path, output_dir)
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(os.path.expanduser(raw), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and not is_vsr_output(Path(m))]
            files = [f for f in files if not _matches(f.as_posix(), exclude)]
            if not files:
                missing.append(Entry(raw, "failed", error=f"{raw}: no file matches"))
            for found in files:
                add(found, output_dir)
        else:
            missing.append(Entry(raw, "failed", error=f"{raw}: no such file or directory"))
    return items, missing


def assign_outputs(items: list[Item], scale: int, output: Path | None = None) -> tuple[list[Item], list[Entry]]:
    """Give each item its output file (``output``: the one file a single input was given); refuse clashes.

    Two inputs never share an output: default names keep the source's suffix
    when the container changes (``clip.avi`` -> ``clip.avi.x4.mkv``), and
    inputs whose outputs would still coincide all fail with a line naming the
    others, before any work starts.
    """
    named: list[Item] = []
    failed: list[Entry] = []
    for item in items:
        try:
            target = output or default_output(item.input, scale)
        except VsrError as exc:
            failed.append(Entry(str(item.input), "failed", error=str(exc)))
            continue
        if output is None and item.output_dir is not None:
            target = item.output_dir / target.name
        named.append(Item(item.input, item.output_dir, target))
    by_output: dict[Path, list[Item]] = {}
    for item in named:
        assert item.output is not None
        by_output.setdefault(Path(os.path.abspath(item.output)), []).append(item)
    kept = []
    for item in named:
        assert item.output is not None
        others = [o.input.name for o in by_output[Path(os.path.abspath(item.output))] if o is not item]
        if others:
            error = (
                f"{item.input}: its output {item.output} would also be that of {', '.join(others)}; "
                "rename one of them, or upscale it alone with -o"
            )
            failed.append(Entry(str(item.input), "failed", str(item.output), error))
        else:
            kept.append(item)
    return kept, failed


@dataclass
class Report:
    """The machine-readable account of a batch (``--report FILE``)."""

    preset: str
    entries: list[Entry] = field(default_factory=list)
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts

    def exit_code(self) -> int:
        """0: all done or skipped; 1: some failed; 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if any(e.status == "failed" for e in self.entries) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "vsr_version": __version__,
            "preset": self.preset,
            "started": self.started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "interrupted": self.interrupted,
            "counts": self.counts(),
            "exit_code": self.exit_code(),
            "files": [vars(e) for e in self.entries],
        }

    def write(self, path: Path) -> None:
        try:
            write_atomic(path, (json.dumps(self.as_dict(), indent=2) + "\n").encode())
        except OSError as exc:
            raise VsrError(f"{path}: cannot write the report: {exc.strerror or exc}") from None


def failure(input_name: str, exc: Exception) -> Entry:
    """The report's entry for a file whose run raised ``exc``: one line, whatever it was."""
    if isinstance(exc, VsrError | UsageError):
        return Entry(input_name, "failed", error=str(exc))
    if isinstance(exc, OSError):  # what the file system said
        return Entry(input_name, "failed", error=f"{exc.filename or input_name}: {exc.strerror or exc}")
    if os.environ.get("VSR_DEBUG"):
        raise exc
    return Entry(input_name, "failed", error=f"{input_name}: internal error: {type(exc).__name__}: {exc}")


def run_batch(
    items: list[Item],
    report: Report,
    process: Callable[[Item], RunResult],
    log: logging.Logger,
) -> None:
    """Process every item, recording each outcome in ``report``; a failure moves on to the next."""
    total = len(items)
    for number, item in enumerate(items, start=1):
        where = f"[{number}/{total}]"
        try:
            result = process(item)
        except Interrupted as exc:
            report.entries.append(Entry(str(item.input), "interrupted", error=str(exc)))
            report.interrupted = True
            log.error("%s interrupted: %s", where, item.input)
            return
        except Exception as exc:  # a bug in one file's run must not end the batch either
            entry = failure(str(item.input), exc)
            report.entries.append(entry)
            log.error("%s failed: %s", where, entry.error)
            continue
        report.entries.append(Entry.of(result))
        if result.status == "done":
            resumed = f", resumed at frame {result.resumed_at}" if result.resumed_at else ""
            log.info(
                "%s done: %s -> %s (%d frames, %.1f s, %.2f fps%s)",
                where,
                result.input,
                result.output,
                result.frames,
                result.seconds,
                result.fps,
                resumed,
            )
        else:
            log.info("%s %s: %s (%s)", where, result.status, result.input, result.reason)
