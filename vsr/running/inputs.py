"""What a run works on: inputs (files, folders, globs) and the output each one gets.

Names are bytes on POSIX. A name that is not UTF-8 reaches Python with
surrogate escapes (``os.walk`` and ``pathlib`` keep them), so folders are
walked, outputs named, locked and recorded with the file system's own bytes;
they are escaped only when printed and in the report (:func:`vsr.errors.shown`).
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vsr.errors import VsrError, shown
from vsr.media import VIDEO_SUFFIXES
from vsr.outputs import STATE_DIR, default_output, is_vsr_output
from vsr.running.report import Entry


@dataclass
class Item:
    """One input and where its output goes (``output_dir`` None: beside the input; ``output``: the file)."""

    input: Path
    output_dir: Path | None
    output: Path | None = None


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
        try:
            key = path.resolve(strict=True)
        except (OSError, RuntimeError):  # a symbolic link that loops, or leads nowhere
            missing.append(Entry.failed(path, f"{shown(path)}: {_why_unreadable(path)}"))
            return
        if key not in seen:
            seen.add(key)
            items.append(Item(path, out))

    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            for found in _scan(path, include, exclude):
                rel_dir = found.parent.relative_to(path)
                add(found, output_dir / rel_dir if output_dir is not None else None)
        elif path.exists() or path.is_symlink():
            add(path, output_dir)
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(os.path.expanduser(raw), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and not is_vsr_output(Path(m))]
            files = [f for f in files if not _matches(f.as_posix(), exclude)]
            if not files:
                missing.append(Entry.failed(raw, f"{shown(raw)}: no file matches"))
            for found in files:
                add(found, output_dir)
        else:
            missing.append(Entry.failed(raw, f"{shown(raw)}: no such file or directory"))
    return items, missing


def _why_unreadable(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself"
        if path.is_symlink():
            return f"a symbolic link to {shown(os.readlink(path))}, which does not exist"
        return exc.strerror or str(exc)
    return "cannot be resolved"


def assign_outputs(items: list[Item], scale: int, output: Path | None = None) -> tuple[list[Item], list[Entry]]:
    """Give each item its output file (``output``: the one file a single input was given); refuse clashes.

    Two inputs never share an output: default names keep the source's suffix
    when the container changes (``clip.avi`` -> ``clip.avi.x4.mkv``), and
    inputs whose outputs would still coincide all fail with a line naming the
    others by their whole paths, before any work starts.
    """
    named: list[Item] = []
    failed: list[Entry] = []
    for item in items:
        try:
            target = output or default_output(item.input, scale)
        except VsrError as exc:
            failed.append(Entry.failed(item.input, str(exc)))
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
        others = [shown(o.input) for o in by_output[Path(os.path.abspath(item.output))] if o is not item]
        if others:
            error = (
                f"{shown(item.input)}: its output {shown(item.output)} would also be that of {', '.join(others)}; "
                "rename one of them, or upscale it alone with -o"
            )
            failed.append(Entry.failed(item.input, error, item.output))
        else:
            kept.append(item)
    return kept, failed
