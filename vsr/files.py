"""Durable file writes and the names of temporary files: data on disk before a name says it is complete."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Longest file name (bytes) on the file systems vsr writes to.
NAME_MAX = 255
#: Room kept for a process id in temporary names, so a name's shortening never depends on the pid.
_PID_ROOM = "0" * 10


def fit_name(name: str, prefix: str = "", suffix: str = "") -> str:
    """``prefix + name + suffix``, with ``name`` shortened (and a digest of it added) if the whole passes 255 bytes.

    Names are bytes on POSIX: a name that is not UTF-8 (``b"\\xe9t\\xe9.mp4"`` from an old disk) reaches
    Python with surrogate escapes, and is measured and cut as the bytes the file system holds.
    """
    whole = f"{prefix}{name}{suffix}"
    if len(os.fsencode(whole)) <= NAME_MAX:
        return whole
    raw = os.fsencode(name)
    tag = "~" + hashlib.sha256(raw).hexdigest()[:12]
    room = NAME_MAX - len(os.fsencode(f"{prefix}{tag}{suffix}"))
    short = raw[:room].decode(errors="ignore")  # cut on a character boundary; undecodable bytes dropped
    return f"{prefix}{short}{tag}{suffix}"


def _temp_head(name: str, marker: str, suffix: str) -> str:
    return fit_name(name, ".", f"{marker}{_PID_ROOM}{suffix}")[: -len(_PID_ROOM + suffix)]


def temp_name(name: str, marker: str, suffix: str, pid: int | None = None) -> str:
    """``.NAME<marker><pid><suffix>``, hidden and within 255 bytes: a temporary file of process ``pid``."""
    return f"{_temp_head(name, marker, suffix)}{pid or os.getpid()}{suffix}"


def temp_owner(filename: str, name: str, marker: str, suffix: str) -> int | None:
    """The process id in ``filename`` if it is a :func:`temp_name` of ``name``, else None."""
    head = _temp_head(name, marker, suffix)
    if not filename.startswith(head) or not filename.endswith(suffix):
        return None
    middle = filename[len(head) : len(filename) - len(suffix)]
    return int(middle) if middle.isdigit() else None


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, sync it, then rename it into place."""
    tmp = path.with_name(temp_name(path.name, ".", ".tmp"))
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
