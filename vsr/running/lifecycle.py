"""The steps of one output's life that do not depend on where units run: claim, then publish.

1. **claim**: skip the file, without opening it, when its output was made
   from this very input with these very settings (the plan's settings hash,
   which includes the model's weights digest); report it ``busy`` while it
   may still be being written (modified within ``settle`` seconds); probe it
   (bad input fails here, before anything is written); check the destination
   (:func:`check_destination`) before any network is built; take the output's
   lock (``busy`` if another run holds it); remove what killed runs left.
2. the units run (:mod:`vsr.running.units`) and are joined (:mod:`vsr.running.driver`);
3. **publish**: the finished partial file is synced, recorded and renamed into
   place, only if the input did not change meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vsr.errors import UsageError, VsrError, WriteError, shown
from vsr.files import fsync_path
from vsr.media import IMAGE_SUFFIXES
from vsr.outputs import (
    TAG_KEY,
    OutputLock,
    Provenance,
    default_output,
    identity,
    partial_path,
    remove_leftovers,
    state_path,
    tag_value,
    write_json,
)
from vsr.pipeline import Pipeline, build_pipeline
from vsr.plan import RunPlan
from vsr.segments import SegmentedEncoder
from vsr.stage import Job, MediaInfo, Stage


@dataclass
class RunResult:
    """What became of one input.

    ``status`` is ``done`` (written now), ``skipped`` (an earlier run wrote it
    with the same settings) or ``busy`` (another run is writing it, or the
    input itself is still being written, or it changed while being upscaled).
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
    encoder: Stage

    @property
    def media(self) -> MediaInfo:
        assert self.job.media is not None
        return self.job.media


def segmenter_of(encoder: Stage) -> SegmentedEncoder | None:
    """``encoder`` if it implements :class:`SegmentedEncoder` and can segment with its options."""
    return encoder if isinstance(encoder, SegmentedEncoder) and encoder.segment_suffix() else None


def check_destination(
    plan: RunPlan,
    probing: Pipeline,
    media: MediaInfo,
    input_path: Path,
    output: Path,
    provenance: Provenance,
    force: bool,
) -> None:
    """Everything the join and the publish will need, checked before any work, as FFmpeg checks its muxer.

    The output is not the input, a folder, a foreign file or another input's
    upscale; its folder exists and is writable; an image goes to an image; and
    the encoder can write it: the container its suffix names, a codec that
    container holds, the frame size (:meth:`vsr.stage.Stage.check_output`).

    Raises:
        UsageError: a destination the options cannot write (exit 2).
        VsrError: a folder that is missing or not writable.
    """
    if output.resolve() == input_path.resolve() or (output.exists() and output.samefile(input_path)):
        raise UsageError(f"{shown(output)}: output would overwrite the input; choose another -o")
    if output.is_dir():
        raise UsageError(f"{shown(output)}: is a directory; give a file name")
    if output.exists() and not force:
        if not provenance.by_vsr:
            raise UsageError(f"{shown(output)}: already exists and was not made by vsr (use --force to replace it)")
        if not provenance.same_input(input_path):
            made_from = provenance.record.get("input") if provenance.record else (provenance.tag or {}).get("input")
            raise UsageError(
                f"{shown(output)}: already holds vsr's upscale of another input ({shown(made_from)}); "
                "give this one another -o (or --force to replace it)"
            )
    parent = output.parent
    if parent.exists() and not parent.is_dir():
        raise VsrError(f"{shown(parent)}: is not a directory, so it cannot hold the output")
    if not parent.is_dir():
        raise VsrError(f"{shown(parent)}: output directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VsrError(f"{shown(parent)}: output directory is not writable")
    image_out = output.suffix.lower() in IMAGE_SUFFIXES
    if image_out and not media.is_image and output.suffix.lower() not in (".webp", ".png"):  # animated WebP, APNG
        raise UsageError(f"{shown(output)}: image output needs an image input; use a video suffix such as .mp4 or .mkv")
    if media.is_image and not image_out:
        example = default_output(input_path, plan.scale)
        raise UsageError(f"{shown(input_path)} is a still image: give an image output such as {shown(example)}")
    # container, codec and size: what the join will need; a still's format and its transparency
    probing.encoder.check_output(media.width * plan.scale, media.height * plan.scale)


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
    """Step 1 above: a :class:`RunResult` when there is nothing to do (skipped, busy), else a :class:`Claim`.

    The caller releases ``claim.lock`` when done with the output.

    Raises:
        VsrError: bad input, unwritable destination.
        UsageError: output equal to the input, a foreign file in the way, a container or codec that cannot be.
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
        raise VsrError(f"{shown(input_path)}: cannot read: {exc.strerror or exc}") from None
    if busy:
        return RunResult(input_path, output, "busy", reason=busy)
    job = Job(input=input_path, output=Path(), final_output=output, registry=plan.registry, log=log)
    probing = build_pipeline(plan, job)
    media = probing.probe()  # bad input fails here, before anything is written
    if media is None:
        raise VsrError(f"{shown(input_path)}: the decoder described nothing")
    if make_parent:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VsrError(f"{shown(output.parent)}: cannot create output directory: {exc.strerror or exc}") from None
    job = replace(job, media=media)
    probing = build_pipeline(plan, job)
    check_destination(plan, probing, media, input_path, output, provenance, force)
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
    job = replace(job, output=partial_path(output), metadata=metadata)
    return Claim(job, lock, before, build_pipeline(plan, job).encoder)


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


def publish(plan: RunPlan, claimed: Claim, frames: int) -> bool:
    """Step 3: sync the finished partial file, record it, rename it into place.

    Returns True, publishing nothing, when the input changed meanwhile (the
    work folder is then removed: its segments are of the old input).

    Raises:
        VsrError: the encoder wrote nothing.
        WriteError: the destination failed.
    """
    job = claimed.job
    output, tmp = job.final_output, job.output
    if not tmp.exists():
        raise VsrError(f"{shown(output)}: the encoder wrote no file")
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
        raise WriteError(f"{shown(output)}: cannot write: {exc.strerror or exc}") from None
    return False
