"""Where an output goes and what vsr knows about it: names, done-records, the vsr tag, locks, leftovers.

For an output ``DIR/NAME``, vsr keeps its state in ``DIR/.vsr/``::

    NAME.lock     flock()ed while a run works on NAME; the kernel releases it
                  when that process exits or is killed, so a stale lock never
                  blocks anyone
    NAME.json     the done-record, written just before NAME is renamed into
                  place: input (path, size, mtime), the settings hash (every
                  stage and option, the model's weights digest included),
                  output size
    NAME.work/    a video's finished segments (see :mod:`vsr.segments`)

Every video vsr writes also carries a ``vsr`` tag in its container metadata
(input name, size, mtime and settings hash), so vsr recognises its own
outputs when ``.vsr/`` is gone. Names vsr makes for itself (the hidden
partial output, the state files) are kept within the file system's 255 bytes
by shortening long names with a digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from vsr.errors import UsageError, WriteError
from vsr.files import NAME_MAX, fit_name, temp_name, temp_owner, write_atomic
from vsr.media import IMAGE_SUFFIXES, KEEP_SUFFIXES

STATE_DIR = ".vsr"
#: Container metadata key of the tag vsr writes into its videos.
TAG_KEY = "vsr"
#: ``clip.x4.mp4``, ``clip.avi.x4.mkv``: the shape of vsr's default output names.
_OUTPUT_NAME = re.compile(r"\.x\d{1,2}\.[^.]+$")


def default_output(path: Path, scale: int = 4) -> Path:
    """``clip.mp4`` -> ``clip.x4.mp4`` beside it; ``clip.avi`` -> ``clip.avi.x4.mkv``.

    A container vsr does not keep (AVI, MPEG-TS, ...) becomes Matroska, and
    the source's suffix stays in the name, so ``clip.avi`` and ``clip.ts``
    beside ``clip.mkv`` get three different outputs.
    """
    suffix = path.suffix
    if suffix.lower() in IMAGE_SUFFIXES or suffix.lower() in KEEP_SUFFIXES:
        name = f"{path.stem}.x{scale}{suffix}"
    else:
        name = f"{path.name}.x{scale}.mkv"
    if len(os.fsencode(name)) > NAME_MAX:
        raise UsageError(f"{path}: the output name would pass {NAME_MAX} bytes; give a shorter one with -o")
    return path.with_name(name)


def looks_like_output(path: Path) -> bool:
    """Whether ``path`` has the shape of a name vsr gives its outputs (``NAME.x4.EXT``)."""
    return bool(_OUTPUT_NAME.search(path.name))


def partial_path(output: Path, pid: int | None = None) -> Path:
    """Hidden temporary name beside ``output``, keeping its suffix so FFmpeg picks the same format."""
    return output.with_name(temp_name(output.stem, ".partial-", output.suffix, pid))


def state_path(output: Path, suffix: str) -> Path:
    """``DIR/.vsr/NAME<suffix>``: where vsr keeps its state about ``output``."""
    return output.parent / STATE_DIR / fit_name(output.name, suffix=suffix)


def identity(path: Path) -> dict[str, int]:
    """What tells one version of a file from another: size and modification time."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def tag_value(input_path: Path, settings: str) -> str:
    """The ``vsr`` tag of an output made from ``input_path`` with ``settings``."""
    from vsr import __version__

    tag = {"version": __version__, "input": input_path.name, **identity(input_path), "settings": settings}
    return json.dumps(tag, separators=(",", ":"))


def read_tag(path: Path) -> dict[str, Any] | None:
    """The ``vsr`` tag in a video's container metadata, or None (not a video, or not made by vsr)."""
    import av
    import av.error

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            raw = next((v for k, v in container.metadata.items() if k.lower() == TAG_KEY), None)
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    if raw is None:
        return None
    try:
        tag = json.loads(raw)
    except ValueError:
        return None
    return tag if isinstance(tag, dict) else None


class Provenance:
    """What vsr knows of an existing output: its done-record, else the tag inside it."""

    def __init__(self, output: Path) -> None:
        self.output = output
        record = read_json(state_path(output, ".json"))
        try:
            size = output.stat().st_size if output.is_file() else None
        except OSError:
            size = None
        self.record = record if record is not None and size is not None and record.get("output_size") == size else None
        self.tag = read_tag(output) if self.record is None and size is not None else None

    @property
    def by_vsr(self) -> bool:
        return self.record is not None or self.tag is not None

    def same_input(self, input_path: Path) -> bool:
        """Whether the output was made from ``input_path`` (or the same file, moved since)."""
        now = identity(input_path)
        if self.record is not None:
            return self.record.get("input") == str(input_path.resolve()) or self.record.get("input_identity") == now
        if self.tag is not None:
            return self.tag.get("input") == input_path.name
        return False

    def done(self, input_path: Path, settings: str) -> bool:
        """Whether the output was made from this very version of ``input_path`` with these very settings."""
        try:
            now = identity(input_path)
        except OSError:
            return False
        if self.record is not None:
            return (
                self.same_input(input_path)
                and self.record.get("fingerprint") == settings
                and self.record.get("input_identity") == now
            )
        if self.tag is not None:
            return (
                self.same_input(input_path)
                and self.tag.get("settings") == settings
                and {"size": self.tag.get("size"), "mtime_ns": self.tag.get("mtime_ns")} == now
            )
        return False


def is_vsr_output(path: Path) -> bool:
    """A file vsr wrote: it has a done-record, or vsr's name shape and vsr's tag. Never taken for an input."""
    if state_path(path, ".json").is_file():
        return True
    return looks_like_output(path) and read_tag(path) is not None


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``.vsr/NAME.lock``; the kernel drops it when its process dies.

    The holder removes the file (and an empty ``.vsr/``) when it is done. A
    run that locked a file which the previous holder removed in the meantime
    notices (the path no longer names its file) and tries again, so two runs
    can never hold locks on two different files for the same output.
    """

    def __init__(self, output: Path) -> None:
        self.path = state_path(output, ".lock")
        self.fd: int | None = None

    def acquire(self) -> bool:
        for _ in range(10):
            try:
                self.path.parent.mkdir(exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue  # a finishing run removed .vsr/ between our mkdir and open
            except OSError as exc:
                raise WriteError(f"{self.path.parent}: cannot create vsr's lock: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return True
            os.close(fd)
        raise WriteError(f"{self.path}: cannot take the lock (the file keeps changing)")

    def holder(self) -> str:
        with contextlib.suppress(OSError):
            return self.path.read_text().strip()
        return "?"

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # still holding it: see the class docstring
            os.close(self.fd)
            self.fd = None
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only if empty: no record, no work kept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(output: Path, log: logging.Logger) -> None:
    """Delete what killed runs left for ``output``: partial outputs and half-written records.

    Call it holding the output's lock: every vsr run that writes ``output``
    holds that lock, so such a file from another process is a dead run's,
    unless that process still lives (a run of an older vsr, say), which keeps it.
    """
    record = state_path(output, ".json")
    kinds = [(output.parent, output.stem, ".partial-", output.suffix), (record.parent, record.name, ".", ".tmp")]
    for folder, name, marker, suffix in kinds:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            pid = temp_owner(entry, name, marker, suffix)
            if pid is None or pid == os.getpid() or _alive(pid):
                continue
            with contextlib.suppress(OSError):
                (folder / entry).unlink()
                log.info("removed %s, left by a killed run (pid %d)", folder / entry, pid)
