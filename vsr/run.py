"""Upscale one file safely: output name, done-records, a lock, resumable segments, atomic publication.

For an output ``DIR/NAME``, vsr keeps its state in ``DIR/.vsr/``::

    NAME.lock     flock()ed while a run works on NAME; the kernel releases it
                  when that process exits or is killed, so a stale lock never
                  blocks anyone
    NAME.json     the done-record, written just before NAME is renamed into
                  place: input (path, size, mtime), the settings fingerprint
                  (every stage and option, the model included), output size
    NAME.work/    a video's finished segments (``seg-<first frame>.mp4``/``.mov``) and
                  ``manifest.json``, until the output is complete

A video is processed in segments of ``segment_seconds`` (frames ``k * N`` to
``(k + 1) * N - 1``), each encoded by a fresh encoder into its own file, which
is synced, renamed into place and recorded in the manifest once complete.
A run killed at any moment (SIGKILL, power loss) loses at most the segment in
progress: the next run checks the manifest against the input and the
settings, seeks to the first missing frame and carries on. Segments are
independent (the temporal smoother starts afresh at each), so a resumed
output is the same as an uninterrupted one. At the end the segments' packets
are joined, unchanged, with the input's audio, subtitles and attachments into
``.NAME.partial-PID.EXT`` beside the output, which is synced and renamed to
NAME. Still images are written directly (they are one frame).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr.errors import Interrupted, UsageError, VsrError, WriteError
from vsr.files import fsync_path, write_atomic
from vsr.media import IMAGE_SUFFIXES
from vsr.options import parse_options
from vsr.pipeline import Pipeline, build_pipeline
from vsr.presets import Preset
from vsr.registry import Registry
from vsr.stage import Job, MediaInfo, Segment

#: Containers whose suffix the default output keeps; others become .mkv, which holds any stream.
KEEP_SUFFIXES = {".mp4", ".m4v", ".mkv", ".mov", ".webm"}
#: Default segment length: the most work a crash can cost.
SEGMENT_SECONDS = 10.0
STATE_DIR = ".vsr"
MANIFEST_VERSION = 1


@dataclass
class RunResult:
    """What became of one input.

    ``status`` is ``done`` (written now), ``skipped`` (an earlier run wrote it
    with the same settings) or ``busy`` (another run is writing it).
    """

    input: Path
    output: Path
    status: str = "done"
    frames: int = 0
    seconds: float = 0.0
    resumed_at: int = 0
    reason: str = ""

    @property
    def fps(self) -> float:
        """Frames upscaled by this run per second (resumed frames not counted)."""
        return (self.frames - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0


def default_output(path: Path, scale: int = 4) -> Path:
    """``clip.mp4`` -> ``clip.x4.mp4`` beside it; never the input itself."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix not in KEEP_SUFFIXES:
        suffix = ".mkv"
    return path.with_name(f"{path.stem}.x{scale}{suffix}")


def partial_path(output: Path) -> Path:
    """Hidden temporary name beside ``output``, keeping its suffix so FFmpeg picks the same format."""
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


def state_path(output: Path, suffix: str) -> Path:
    """``DIR/.vsr/NAME<suffix>``: where vsr keeps its state about ``output``."""
    return output.parent / STATE_DIR / f"{output.name}{suffix}"


def fingerprint(registry: Registry, preset: Preset) -> str:
    """SHA-256 of every enabled stage and all its options (defaults filled in): the settings' identity."""
    parts = []
    for choice in preset.choices():
        cls = registry.stage(choice.role, choice.stage)
        options = parse_options(cls.Options, choice.options, f"{choice.role} stage {choice.stage!r}")
        parts.append([choice.role, choice.stage, dataclasses.asdict(options)])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def made_by_vsr(output: Path) -> bool:
    """Whether ``output`` is a file that vsr wrote (its done-record matches its size)."""
    record = _read_json(state_path(output, ".json"))
    return record is not None and output.is_file() and record.get("output_size") == output.stat().st_size


def is_done(input_path: Path, output: Path, settings: str) -> bool:
    """Whether ``output`` was made from this very input with these very settings."""
    record = _read_json(state_path(output, ".json"))
    try:
        return (
            record is not None
            and output.is_file()
            and record.get("output_size") == output.stat().st_size
            and record.get("fingerprint") == settings
            and record.get("input_identity") == _identity(input_path)
        )
    except OSError:
        return False


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


def check_output(input_path: Path, output: Path, overwrite: bool) -> None:
    if output.resolve() == input_path.resolve() or (output.exists() and output.samefile(input_path)):
        raise UsageError(f"{output}: output would overwrite the input; choose another -o")
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; give a file name")
    if output.exists() and not overwrite:
        raise UsageError(f"{output}: already exists and was not made by vsr with these inputs (use --force)")
    parent = output.parent
    if not parent.is_dir():
        raise VsrError(f"{parent}: output directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VsrError(f"{parent}: output directory is not writable")
    in_image = input_path.suffix.lower() in IMAGE_SUFFIXES
    out_image = output.suffix.lower() in IMAGE_SUFFIXES
    if out_image and not in_image:
        raise UsageError(f"{output}: image output needs an image input; use a video suffix such as .mp4 or .mkv")


class _Work:
    """The work directory of a resumable video run and its manifest."""

    def __init__(self, output: Path, identity: dict[str, Any], log: logging.Logger) -> None:
        self.dir = state_path(output, ".work")
        self.manifest_path = self.dir / "manifest.json"
        self.identity = identity
        self.log = log
        self.segments: list[dict[str, Any]] = []

    def open(self) -> None:
        """Load a manifest that fits this input and these settings, or start afresh."""
        manifest = _read_json(self.manifest_path)
        if manifest is not None:
            problem = self._problem(manifest)
            if problem is None:
                self.segments = manifest["segments"]
                keep = {"manifest.json", *(s["file"] for s in self.segments)}
                for path in self.dir.iterdir():  # what a killed run left half-written
                    if path.name not in keep:
                        path.unlink()
                return
            self.log.warning("cannot resume earlier work on this file (%s); starting again", problem)
        self.remove()
        try:
            self.dir.mkdir(parents=True)
        except OSError as exc:
            raise VsrError(f"{self.dir}: cannot create the work directory: {exc.strerror or exc}") from None
        self.save()

    def _problem(self, manifest: dict[str, Any]) -> str | None:
        if manifest.get("version") != MANIFEST_VERSION or manifest.get("identity") != self.identity:
            return "the input or the settings changed"
        expected = 0
        for seg in manifest.get("segments", []):
            path = self.dir / str(seg.get("file"))
            if seg.get("first_index") != expected or not path.is_file() or path.stat().st_size != seg.get("size"):
                return f"segment {seg.get('number')} is missing or damaged"
            expected += int(seg["frames"])
        return None

    def save(self) -> None:
        manifest = {"version": MANIFEST_VERSION, "identity": self.identity, "segments": self.segments}
        _write_json(self.manifest_path, manifest)

    def add(self, segment: Segment) -> None:
        self.segments.append(
            {
                "number": segment.number,
                "file": segment.path.name,
                "first_index": segment.first_index,
                "frames": segment.frames,
                "last_pts": segment.last_pts,
                "first_dts": segment.first_dts,
                "time_base": str(segment.time_base),
                "size": segment.path.stat().st_size,
            }
        )
        self.save()

    def records(self) -> list[Segment]:
        """The finished segments, in order."""
        return [
            Segment(
                s["number"],
                self.dir / s["file"],
                s["first_index"],
                s["frames"],
                s["last_pts"],
                s["first_dts"],
                Fraction(s["time_base"]),
            )
            for s in self.segments
        ]

    @property
    def frames_done(self) -> int:
        return sum(int(s["frames"]) for s in self.segments)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def upscale_file(
    registry: Registry,
    preset: Preset,
    input_path: Path,
    output: Path | None = None,
    *,
    output_dir: Path | None = None,
    force: bool = False,
    segment_seconds: float = SEGMENT_SECONDS,
    on_start: Callable[[MediaInfo, Path, int], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    log: logging.Logger | None = None,
) -> RunResult:
    """Upscale ``input_path`` into ``output`` (default: :func:`default_output`, in ``output_dir`` if given).

    Returns without opening the input when the output is already done with
    the same settings (``skipped``), or when another process holds its lock
    (``busy``). Otherwise resumes any earlier, interrupted work on it.

    Raises:
        VsrError: bad input, unwritable destination, encoding failure.
        UsageError: bad options, output equal to the input, a foreign file in the way.
        Interrupted: SIGINT/SIGTERM; finished segments are kept for the next run.
    """
    log = log or logging.getLogger("vsr")
    job = Job(input=input_path, output=Path(), final_output=Path(), registry=registry, log=log)
    pipeline = build_pipeline(registry, preset, job, probe=False)  # checks every option; opens nothing
    if output is None:
        output = default_output(input_path, pipeline.scale)
        if output_dir is not None:
            output = output_dir / output.name
    settings = fingerprint(registry, preset)
    if not force and is_done(input_path, output, settings):
        _tidy_finished(output)
        return RunResult(input_path, output, "skipped", reason="already done with these settings")
    job.media = pipeline.probe()  # bad input fails here, before anything is written
    if output_dir is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VsrError(f"{output.parent}: cannot create output directory: {exc.strerror or exc}") from None
    check_output(input_path, output, overwrite=force or made_by_vsr(output))
    if job.media is not None and job.media.is_image and output.suffix.lower() not in IMAGE_SUFFIXES:
        example = default_output(input_path, pipeline.scale)
        raise UsageError(f"{input_path} is a still image: give an image output such as {example}")
    lock = OutputLock(output)
    if not lock.acquire():
        return RunResult(input_path, output, "busy", reason=f"another vsr run (pid {lock.holder()}) is writing it")
    try:
        if not force and is_done(input_path, output, settings):  # finished while we were waiting
            return RunResult(input_path, output, "skipped", reason="already done with these settings")
        identity = {"input": _identity(input_path), "settings": settings}
        return _run(pipeline, job, output, identity, segment_seconds, on_start, on_frame)
    finally:
        lock.release()


def _tidy_finished(output: Path) -> None:
    """Remove the work directory a run killed just after publishing its output left behind."""
    work = state_path(output, ".work")
    if work.is_dir():
        lock = OutputLock(output)
        if lock.acquire():
            try:
                shutil.rmtree(work, ignore_errors=True)
            finally:
                lock.release()


def _run(
    pipeline: Pipeline,
    job: Job,
    output: Path,
    identity: dict[str, Any],
    segment_seconds: float,
    on_start: Callable[[MediaInfo, Path, int], None] | None,
    on_frame: Callable[[int], None] | None,
) -> RunResult:
    media = job.media
    assert media is not None
    encoder = pipeline.stages[-1]
    segmented = not media.is_image and getattr(encoder, "supports_segments", False) and segment_seconds > 0
    tmp = partial_path(output)
    job.output, job.final_output = tmp, output
    work = _Work(output, identity, job.log)
    if segmented:
        work.open()
        rate = float(media.frame_rate) if media.frame_rate else 25.0
        job.segment_frames = max(1, round(segment_seconds * rate))
        job.work_dir = work.dir
        job.on_segment = work.add
        job.start_index = work.frames_done
        job.after_pts = int(work.segments[-1]["last_pts"]) if work.segments else None
        if job.start_index:
            job.log.info("resuming at frame %d (%d segments already done)", job.start_index, len(work.segments))
    if on_start is not None:
        on_start(media, output, job.start_index)
    start = time.perf_counter()
    count = job.start_index
    try:
        for _ in pipeline.frames():
            count += 1
            if on_frame is not None:
                on_frame(count)
        if segmented:
            if not work.segments:
                raise VsrError(f"{job.input}: no frame to encode")
            encoder.join(work.records(), tmp)  # type: ignore[attr-defined]
        if not tmp.exists():
            raise VsrError(f"{output}: the encoder wrote no file")
        fsync_path(tmp)  # the data is on disk before the name says the file is complete
        record = {
            "input": str(job.input.resolve()),
            "input_identity": identity["input"],
            "fingerprint": identity["settings"],
            "output_size": tmp.stat().st_size,
            "frames": count,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        _write_json(state_path(output, ".json"), record)
        os.replace(tmp, output)
        fsync_path(output.parent)
    except (Interrupted, WriteError):
        raise  # finished segments stay for the next run
    except OSError as exc:
        raise WriteError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        if segmented:  # the input or the settings failed: resuming would fail the same way
            work.remove()
        raise
    finally:
        tmp.unlink(missing_ok=True)
    if segmented:
        work.remove()
    return RunResult(job.input, output, "done", count, time.perf_counter() - start, resumed_at=job.start_index)
