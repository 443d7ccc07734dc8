"""Resumable video runs: segments closed by work done, the work folder, carried state, the join.

A video is encoded as a run of segments, each by a fresh encoder (so each
starts with a keyframe) into its own file in ``DIR/.vsr/NAME.work/``. A
segment closes at the first frame after ``checkpoint`` seconds of wall time
went into it, or once it holds ``max_seconds`` of video, whichever comes
first, so a kill loses about ``checkpoint`` seconds of work whatever the
model and machine. A closed segment is synced, renamed into place, and
listed in ``manifest.json`` together with the history that stages with
memory attached to its last frame (:meth:`vsr.frame.Frame.carrying`: the
temporal smoother's previous input and output), saved losslessly beside it.

The next run checks the manifest against the input and the settings hash,
seeks the input to the first missing frame, hands each stage its carried
history back (``job.state``) and goes on. The frames that reach the encoder
are then exactly those of an uninterrupted run; with a lossless encoder the
joined file decodes to the same pixels (with a lossy one, encoders decide
differently around other cut points, as any re-encode would). At the end the
encoder joins the segments' packets, unchanged and at their original
timestamps, with the input's other streams.

Encoders opt in by implementing :class:`SegmentedEncoder`; any other encoder
writes the whole video in one go (and a killed run starts again).
"""

from __future__ import annotations

import abc
import io
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr.errors import VsrError, WriteError
from vsr.files import fsync_path, write_atomic
from vsr.frame import Frame
from vsr.outputs import read_json, state_path, write_json

MANIFEST_VERSION = 2
#: Default wall-clock seconds of work per segment: about the most a kill can cost.
CHECKPOINT_SECONDS = 60.0
#: Default upper bound of a segment, in seconds of video.
SEGMENT_SECONDS = 10.0

#: Carried state: arrays by name, by the role of the stage that keeps them.
State = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class SegmentPolicy:
    """When a segment closes: after ``checkpoint`` s of work, or at ``max_seconds`` of video."""

    checkpoint: float = CHECKPOINT_SECONDS
    max_seconds: float = SEGMENT_SECONDS

    def closes_before(self, frame: Frame, first: Frame, elapsed: float) -> bool:
        """Whether the segment that began with ``first`` ends before ``frame``."""
        if elapsed >= self.checkpoint:
            return True
        if frame.pts is None or first.pts is None:
            return False
        return self.full(first.pts, frame.pts, frame.time_base)

    def full(self, first_pts: int, pts: int, time_base: Fraction) -> bool:
        """Whether a segment from ``first_pts`` holds its ``max_seconds`` of video before the frame at ``pts``.

        Units cut in advance (:func:`vsr.units.cut_units`) use the same rule,
        so a run whose checkpoint never fires cuts where they do.
        """
        return float((pts - first_pts) * time_base) >= self.max_seconds - 1e-9


#: Segments of 60 s of work and at most 10 s of video.
DEFAULT_POLICY = SegmentPolicy()


@dataclass(frozen=True)
class SegmentTiming:
    """What an encoder tells about a finished segment file: its first packet's dts, in ``time_base``.

    Containers such as MP4 keep packet times relative to the first dts and
    would round that one to milliseconds in an edit list, so it is kept here.
    """

    first_dts: int
    time_base: Fraction


@dataclass(frozen=True)
class Segment:
    """A finished piece of a resumable run: frames ``first_index`` on, in ``path``."""

    number: int
    path: Path
    first_index: int
    frames: int
    last_pts: int
    timing: SegmentTiming


class SegmentWriter(abc.ABC):
    """One segment being encoded into its own file."""

    @abc.abstractmethod
    def write(self, frame: Frame) -> None:
        """Encode one frame (frames come in order, with the source's pts)."""

    @abc.abstractmethod
    def close(self) -> SegmentTiming:
        """Flush the encoder and finish the file; it must be complete on return."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop without finishing (interrupted or failed); vsr deletes the file."""


class SegmentedEncoder(abc.ABC):
    """The capability of an encoder to write a video as segments and join them (a mix-in for encoder stages).

    Raise :class:`vsr.errors.WriteError` for failures of the destination (a
    full disk: finished segments stay for the next run) and
    :class:`vsr.errors.VsrError` for the rest.
    """

    @abc.abstractmethod
    def segment_suffix(self) -> str:
        """The suffix of segment files (``".mp4"``), or ``""`` when these options cannot be segmented."""

    @abc.abstractmethod
    def open_segment(self, path: Path, first: Frame) -> SegmentWriter:
        """Start a segment file at ``path``, whose first frame is ``first``."""

    @abc.abstractmethod
    def join(self, segments: Sequence[Segment], output: Path) -> None:
        """Write ``output``: the segments' packets at their original times, with the input's other streams."""


def _pack_state(state: State) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"{role}/{name}": array for role, named in state.items() for name, array in named.items()}
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _unpack_state(data: bytes) -> dict[str, dict[str, np.ndarray]]:
    state: dict[str, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            role, _, name = key.partition("/")
            state.setdefault(role, {})[name] = npz[key]
    return state


class WorkDir:
    """The work folder of one output: finished segments, their carried state, and ``manifest.json``."""

    def __init__(self, output: Path, identity: dict[str, Any], log: logging.Logger, *, in_order: bool = True) -> None:
        """``in_order``: segments are finished one after another (a single pass); False: units cut in
        advance (:mod:`vsr.units`) finish in any order, their cuts part of ``identity``."""
        self.dir = state_path(output, ".work")
        self.manifest_path = self.dir / "manifest.json"
        self.identity = identity
        self.log = log
        self.in_order = in_order
        self.entries: list[dict[str, Any]] = []

    def open(self) -> None:
        """Load a manifest that fits this input and these settings, or start afresh."""
        manifest = read_json(self.manifest_path)
        if manifest is not None:
            problem = self._problem(manifest)
            if problem is None:
                self.entries = manifest["segments"]
                self.tidy()
                return
            self.log.warning("cannot resume earlier work on this file (%s); starting again", problem)
        self.remove()
        try:
            self.dir.mkdir(parents=True)
        except OSError as exc:
            raise VsrError(f"{self.dir}: cannot create the work directory: {exc.strerror or exc}") from None
        self._save()

    def load(self) -> None:
        """Read the manifest as it is on disk now (another instance of this folder, an in-order unit, wrote it)."""
        manifest = read_json(self.manifest_path)
        self.entries = manifest["segments"] if manifest is not None and self._problem(manifest) is None else []

    def tidy(self) -> None:
        """Delete what is not listed in the manifest: pieces that a killed, failed or interrupted run left."""
        keep = {"manifest.json", *(e["file"] for e in self.entries), *(e["state"] for e in self.entries)}
        try:
            names = [path for path in self.dir.iterdir() if path.name not in keep]
        except OSError:
            return
        for path in names:
            path.unlink(missing_ok=True)

    def _problem(self, manifest: dict[str, Any]) -> str | None:
        if manifest.get("version") != MANIFEST_VERSION or manifest.get("identity") != self.identity:
            return "the input or the settings changed"
        expected = 0
        for entry in manifest.get("segments", []):
            files = [(entry.get("file"), entry.get("size")), (entry.get("state"), entry.get("state_size"))]
            in_place = entry.get("first_index") == expected or not self.in_order
            if not in_place or not all(self._intact(name, size) for name, size in files):
                return f"segment {entry.get('number')} is missing or damaged"
            expected += int(entry["frames"])
        return None

    def _intact(self, name: Any, size: Any) -> bool:
        path = self.dir / str(name)
        return isinstance(name, str) and path.is_file() and path.stat().st_size == size

    def _save(self) -> None:
        manifest = {"version": MANIFEST_VERSION, "identity": self.identity, "segments": self.entries}
        write_json(self.manifest_path, manifest)

    @property
    def frames_done(self) -> int:
        return sum(int(e["frames"]) for e in self.entries)

    @property
    def after_pts(self) -> int | None:
        """The pts of the last finished frame (a resumed decoder starts after it)."""
        return int(self.entries[-1]["last_pts"]) if self.entries else None

    def segments(self) -> list[Segment]:
        """The finished segments, in the video's order."""
        entries = sorted(self.entries, key=lambda e: int(e["first_index"]))
        return [
            Segment(
                e["number"],
                self.dir / e["file"],
                e["first_index"],
                e["frames"],
                e["last_pts"],
                SegmentTiming(e["first_dts"], Fraction(e["time_base"])),
            )
            for e in entries
        ]

    def carried(self) -> dict[str, dict[str, np.ndarray]]:
        """The state the stages carried out of the last finished segment ({} when starting afresh)."""
        if not self.entries or not self.in_order:
            return {}
        try:
            return _unpack_state((self.dir / self.entries[-1]["state"]).read_bytes())
        except (OSError, ValueError) as exc:
            raise VsrError(f"{self.dir}: the saved stage state is damaged ({exc}); delete this folder") from None

    def add(self, segment: Segment, carry: State) -> None:
        """Record a finished segment (its file already in place) and the state carried out of it."""
        state = self.dir / f"seg-{segment.first_index:09d}.state.npz"
        try:
            write_atomic(state, _pack_state(carry))
            fsync_path(self.dir)
            entry = {
                "number": segment.number,
                "file": segment.path.name,
                "first_index": segment.first_index,
                "frames": segment.frames,
                "last_pts": segment.last_pts,
                "first_dts": segment.timing.first_dts,
                "time_base": str(segment.timing.time_base),
                "size": segment.path.stat().st_size,
                "state": state.name,
                "state_size": state.stat().st_size,
            }
            self.entries.append(entry)
            try:
                self._save()
            except OSError:
                self.entries.pop()
                raise
        except OSError as exc:  # a full disk, say: the segment is not kept unlisted on it
            segment.path.unlink(missing_ok=True)
            state.unlink(missing_ok=True)
            raise WriteError(f"{self.dir}: cannot record a finished segment: {exc.strerror or exc}") from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def encode_segments(
    frames: Iterator[Frame],
    encoder: SegmentedEncoder,
    work: WorkDir,
    policy: SegmentPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Frame]:
    """Encode ``frames`` into segments in ``work`` as ``policy`` cuts them; yields each frame once encoded.

    A segment in progress when this stops early (interrupted, failed) is deleted.
    """
    return write_segments(frames, encoder, work.dir, policy, work.add, len(work.entries), clock=clock)


def write_segments(
    frames: Iterator[Frame],
    encoder: SegmentedEncoder,
    directory: Path,
    policy: SegmentPolicy,
    record: Callable[[Segment, State], None],
    number: int = 0,
    *,
    encode_from: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Frame]:
    """Encode ``frames`` into segment files in ``directory``, numbered from ``number``; ``record`` each one.

    Frames with an index below ``encode_from`` are dropped here, neither
    encoded nor yielded: they only primed the stages with memory (upstream)
    of a unit that starts mid-video.
    """
    suffix = encoder.segment_suffix()
    writer: SegmentWriter | None = None
    partial = Path()
    first: Frame | None = None
    last: Frame | None = None
    count, started = 0, 0.0

    def close() -> None:
        assert writer is not None and first is not None and last is not None and last.pts is not None
        timing = writer.close()
        final = directory / f"seg-{first.index:09d}{suffix}"  # by first frame: unique whatever the cuts
        fsync_path(partial)
        os.replace(partial, final)
        record(Segment(number, final, first.index, count, last.pts, timing), last.carry)

    try:
        for frame in frames:
            if frame.index < encode_from:
                continue
            if writer is not None and first is not None and policy.closes_before(frame, first, clock() - started):
                close()
                writer, number = None, number + 1
            if writer is None:
                first, count, started = frame, 0, clock()
                # the pid keeps a retried unit's file apart from a lost attempt's that may still be writing
                partial = directory / f".seg-{frame.index:09d}.{os.getpid()}.partial{suffix}"
                writer = encoder.open_segment(partial, frame)
            writer.write(frame)
            last, count = frame, count + 1
            yield frame
        if writer is not None:
            close()
            writer = None
    except OSError as exc:
        raise WriteError(f"{directory}: cannot write a segment: {exc.strerror or exc}") from None
    finally:
        if writer is not None:  # interrupted or failed mid-segment: nothing of it is kept
            writer.abort()
            partial.unlink(missing_ok=True)
