"""Upscale one file safely: skip what is done, lock, resume, publish atomically.

The output's name, records, tag and lock are :mod:`vsr.outputs`; resumable
segments are :mod:`vsr.segments`. A run:

1. skips the file, without opening it, when its output was made from this
   very input with these very settings (the plan's settings hash, which
   includes the model's weights digest);
2. reports it ``busy`` while it may still be being written (modified within
   ``settle`` seconds), so a copy in progress is never taken for the whole;
3. probes it (bad input fails here, before anything is written), takes the
   output's lock (``busy`` if another run holds it), and removes what killed
   runs left for this output;
4. runs the pipeline, in resumable segments where the encoder can, into a
   hidden partial file that is synced, recorded and renamed into place only
   when complete, and only if the input did not change meanwhile.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vsr.errors import Interrupted, UsageError, VsrError, WriteError
from vsr.files import fsync_path
from vsr.media import IMAGE_SUFFIXES
from vsr.outputs import (
    TAG_KEY,
    OutputLock,
    Provenance,
    check_destination,
    default_output,
    identity,
    partial_path,
    remove_leftovers,
    state_path,
    tag_value,
    write_json,
)
from vsr.pipeline import build_pipeline
from vsr.plan import RunPlan
from vsr.segments import DEFAULT_POLICY, SegmentedEncoder, SegmentPolicy, WorkDir, encode_segments
from vsr.stage import Job, MediaInfo, Stage


@dataclass
class RunResult:
    """What became of one input.

    ``status`` is ``done`` (written now), ``skipped`` (an earlier run wrote it
    with the same settings) or ``busy`` (another run is writing it, or the
    input itself is still being written).
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


def unsettled(path: Path, settle: float) -> str:
    """Why ``path`` may still be being written (modified within ``settle`` seconds), or ``""``."""
    if settle <= 0:
        return ""
    age = time.time() - path.stat().st_mtime
    if abs(age) < settle:
        return f"still being written? modified {max(age, 0):.0f} s ago (waits until --settle {settle:g} s have passed)"
    return ""


@dataclass
class Claim:
    """An input this run is to upscale: probed, its destination checked, its output's lock held.

    ``job`` writes into the hidden partial file (:func:`publish` renames it);
    ``before`` is the input's identity when the work began.
    """

    job: Job
    lock: OutputLock
    before: dict[str, Any]

    @property
    def media(self) -> MediaInfo:
        assert self.job.media is not None
        return self.job.media


def claim(
    plan: RunPlan,
    input_path: Path,
    output: Path | None = None,
    *,
    force: bool = False,
    make_parent: bool = False,
    settle: float = 0.0,
    log: logging.Logger | None = None,
) -> Claim | RunResult:
    """Steps 1 to 3 above: a :class:`RunResult` when there is nothing to do (skipped, busy), else a :class:`Claim`.

    The caller releases ``claim.lock`` when done with the output.

    Raises:
        VsrError: bad input, unwritable destination.
        UsageError: output equal to the input, a foreign file in the way.
    """
    log = log or logging.getLogger("vsr")
    output = output or default_output(input_path, plan.scale)
    provenance = Provenance(output)  # the record, else the tag in the file: read once until the lock is held
    if not force and provenance.done(input_path, plan.settings):
        _tidy_finished(output)
        return RunResult(input_path, output, "skipped", reason="already done with these settings")
    try:
        busy = unsettled(input_path, settle)
    except OSError as exc:
        raise VsrError(f"{input_path}: cannot read: {exc.strerror or exc}") from None
    if busy:
        return RunResult(input_path, output, "busy", reason=busy)
    job = Job(input=input_path, output=Path(), final_output=output, registry=plan.registry, log=log)
    probing = build_pipeline(plan, job)
    media = probing.probe()  # bad input fails here, before anything is written
    if media is None:
        raise VsrError(f"{input_path}: the decoder described nothing")
    if make_parent:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VsrError(f"{output.parent}: cannot create output directory: {exc.strerror or exc}") from None
    check_destination(input_path, output, provenance, force)
    if media.is_image and output.suffix.lower() not in IMAGE_SUFFIXES:
        example = default_output(input_path, plan.scale)
        raise UsageError(f"{input_path} is a still image: give an image output such as {example}")
    if not media.is_image:  # a size the encoder cannot write fails before any upscaling
        probing.encoder.check_output(media.width * plan.scale, media.height * plan.scale)
    lock = OutputLock(output)
    if not lock.acquire():
        return RunResult(input_path, output, "busy", reason=f"another vsr run (pid {lock.holder()}) is writing it")
    try:
        if not force and Provenance(output).done(input_path, plan.settings):  # finished while we were waiting
            lock.release()
            return RunResult(input_path, output, "skipped", reason="already done with these settings")
        remove_leftovers(output, log)
        before = identity(input_path)
    except BaseException:
        lock.release()
        raise
    metadata = {TAG_KEY: tag_value(input_path, plan.settings)}
    return Claim(replace(job, media=media, output=partial_path(output), metadata=metadata), lock, before)


def upscale_file(
    plan: RunPlan,
    input_path: Path,
    output: Path | None = None,
    *,
    force: bool = False,
    make_parent: bool = False,
    policy: SegmentPolicy | None = DEFAULT_POLICY,
    settle: float = 0.0,
    on_start: Callable[[MediaInfo, Path, int], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    log: logging.Logger | None = None,
) -> RunResult:
    """Upscale ``input_path`` into ``output`` (default: :func:`vsr.outputs.default_output`) in this process.

    ``make_parent``: create the output's folder (a batch mirroring its inputs);
    ``policy`` cuts videos into resumable segments (None: one piece);
    ``settle``: seconds an input must have been left unchanged.

    Raises:
        VsrError: bad input, unwritable destination, encoding failure.
        UsageError: output equal to the input, a foreign file in the way.
        Interrupted: SIGINT/SIGTERM; finished segments are kept for the next run.
    """
    claimed = claim(plan, input_path, output, force=force, make_parent=make_parent, settle=settle, log=log)
    if isinstance(claimed, RunResult):
        return claimed
    try:
        return _run(plan, claimed, policy, on_start, on_frame)
    finally:
        claimed.lock.release()


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


def segmenter_of(encoder: Stage) -> SegmentedEncoder | None:
    """``encoder`` if it implements :class:`SegmentedEncoder` and can segment with its options."""
    return encoder if isinstance(encoder, SegmentedEncoder) and encoder.segment_suffix() else None


def _run(
    plan: RunPlan,
    claimed: Claim,
    policy: SegmentPolicy | None,
    on_start: Callable[[MediaInfo, Path, int], None] | None,
    on_frame: Callable[[int], None] | None,
) -> RunResult:
    job, media = claimed.job, claimed.media
    output, tmp = job.final_output, job.output
    pipeline = build_pipeline(plan, job)
    work = WorkDir(output, {"input": claimed.before, "settings": plan.settings}, job.log)
    segmenter = segmenter_of(pipeline.encoder) if policy is not None and not media.is_image else None
    if segmenter is not None:
        work.open()
        if work.entries:
            job = replace(job, start_index=work.frames_done, after_pts=work.after_pts)
            pipeline = build_pipeline(plan, job, work.carried())
            segmenter = segmenter_of(pipeline.encoder)
            job.log.info("resuming at frame %d (%d segments already done)", job.start_index, len(work.entries))
    sink = None
    if segmenter is not None and policy is not None:
        sink = functools.partial(encode_segments, encoder=segmenter, work=work, policy=policy)
    if on_start is not None:
        on_start(media, output, job.start_index)
    start = time.perf_counter()
    count = job.start_index
    try:
        for _ in pipeline.frames(sink):
            count += 1
            if on_frame is not None:
                on_frame(count)
        if segmenter is not None:
            if not work.entries:
                raise VsrError(f"{job.input}: no frame to encode")
            segmenter.join(work.segments(), tmp)
        changed = publish(plan, claimed, count)
    except (Interrupted, WriteError):
        raise  # finished segments stay for the next run
    except OSError as exc:
        raise WriteError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        if segmenter is not None:  # the input or the settings failed: resuming would fail the same way
            work.remove()
        raise
    finally:
        tmp.unlink(missing_ok=True)
    if segmenter is not None:
        work.remove()
    if changed:
        return RunResult(job.input, output, "busy", reason="the input changed while it was being upscaled")
    return RunResult(job.input, output, "done", count, time.perf_counter() - start, resumed_at=job.start_index)


def publish(plan: RunPlan, claimed: Claim, frames: int) -> bool:
    """Step 4's end: sync the finished partial file, record it, rename it into place.

    Returns True, publishing nothing, when the input changed meanwhile (the
    work folder is then removed: its segments are of the old input).

    Raises:
        VsrError: the encoder wrote nothing.
        WriteError: the destination failed.
    """
    job = claimed.job
    output, tmp = job.final_output, job.output
    if not tmp.exists():
        raise VsrError(f"{output}: the encoder wrote no file")
    try:
        if identity(job.input) != claimed.before:
            shutil.rmtree(state_path(output, ".work"), ignore_errors=True)
            return True
        fsync_path(tmp)  # the data is on disk before the name says the file is complete
        record = {
            "input": str(job.input.resolve()),
            "input_identity": claimed.before,
            "fingerprint": plan.settings,
            "output_size": tmp.stat().st_size,
            "frames": frames,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_json(state_path(output, ".json"), record)
        os.replace(tmp, output)
        fsync_path(output.parent)
    except OSError as exc:
        raise WriteError(f"{output}: cannot write: {exc.strerror or exc}") from None
    return False
