"""Units of work: what an executor runs, and what one worker does with one unit.

A unit is one of three things:

- the **rest of a video, in order** (the inline executor): segments closed by
  work done (:class:`vsr.segments.SegmentPolicy`), each recorded in the work
  folder's manifest as it closes together with the exact history of the
  stages with memory, so a resumed run equals an uninterrupted one;
- the **whole file** in one go (an image, or an encoder that cannot segment);
- a **piece of a video cut in advance** (workers in other processes or on
  other machines), described below.

A run on several workers (local devices, or a Ray cluster) cuts each video
where a single pass would close its segments when no checkpoint fires (:meth:`vsr.segments.SegmentPolicy.full`): every
``--segment`` seconds of video, counted from the frame times the decoder reads
off the packets (:meth:`vsr.stage.Stage.frame_times`, no decoding). Each unit
is one segment file, written by whichever worker takes it; the driver records
it in the work folder's manifest and joins the segments once all are done,
exactly as a single pass would. A file whose decoder cannot tell its frame
times, an image, or an encoder that cannot segment runs as one unit.

Stages with memory (the temporal smoother) start a unit without the history
of the frames before it. So a unit first runs the last ``prime`` frames of
the previous unit through every stage but the encoder, which drops them
(:func:`vsr.segments.write_segments`' ``encode_from``). Sequential runs carry
the exact history instead (:mod:`vsr.segments`).

Workers remake the plan from the resolved preset the driver sends and check
that it hashes to the driver's settings, so a worker with other model
weights, plugins or vsr version refuses its unit rather than write a
different picture into the same file. The plan, and with it the built network,
is kept for the worker's next units.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr.errors import VsrError, shown
from vsr.pipeline import build_pipeline
from vsr.plan import RunPlan, make_plan
from vsr.presets import Preset
from vsr.running.lifecycle import segmenter_of
from vsr.segments import Segment, SegmentPolicy, State, WorkDir, encode_segments, write_segments
from vsr.stage import Job, MediaInfo

#: Frames a unit upscales before its first, to prime stages with memory (not encoded).
PRIME_FRAMES = 8


@dataclass(frozen=True)
class Unit:
    """Frames ``first_index`` to ``first_index + frames - 1`` of a video: one segment file.

    ``after_pts``/``until_pts``: the pts of the frame before it and of the
    next unit's first frame (None at the ends). Decoding starts earlier, at
    frame ``prime_index`` (the first after ``prime_after_pts``), to prime the
    stages with memory.
    """

    number: int
    first_index: int
    frames: int
    until_pts: int | None
    prime_index: int
    prime_after_pts: int | None


def cut_units(times: Sequence[int], time_base: Fraction, policy: SegmentPolicy, prime: int) -> list[Unit]:
    """Cut a video whose frames have pts ``times`` (in order) where ``policy`` closes segments by video time."""
    starts = [0]
    for index in range(1, len(times)):
        if policy.full(times[starts[-1]], times[index], time_base):
            starts.append(index)
    units = []
    for number, first in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(times)
        primed = max(0, first - prime)
        units.append(
            Unit(
                number,
                first,
                end - first,
                times[end] if end < len(times) else None,
                primed,
                times[primed - 1] if primed else None,
            )
        )
    return units


def cuts_digest(units: Sequence[Unit]) -> str:
    """What identifies the cuts in a work folder's manifest (a resume with other cuts starts afresh)."""
    text = ",".join(f"{u.first_index}:{u.frames}:{u.prime_index}" for u in units)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UnitRequest:
    """Everything a worker needs for one unit; plain data, sent to other processes and machines.

    ``unit`` None: the whole file in one go, written to ``partial`` (the file
    the driver publishes), or, with ``in_order`` (a policy), the rest of the
    video in order into the work folder whose manifest matches ``identity``;
    else one segment of a video cut in advance into ``work_dir``.
    """

    preset: Preset
    settings: str
    input: Path
    output: Path
    partial: Path
    media: MediaInfo
    metadata: dict[str, str]
    unit: Unit | None = None
    work_dir: Path = Path()
    in_order: SegmentPolicy | None = None
    identity: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitResult:
    """What a worker did: ``frames`` encoded in ``seconds`` by ``worker``; the segment of a segment unit.

    ``resumed_at``: the frame an in-order unit started at (the frames before were done by earlier runs).
    """

    frames: int
    seconds: float
    worker: str
    segment: Segment | None = None
    resumed_at: int = 0


#: This worker's plans, by settings hash: the plan (and so the built network) outlives one unit.
_PLANS: dict[str, RunPlan] = {}


def worker_plan(preset: Preset, settings: str) -> RunPlan:
    """The driver's plan, remade in this worker; refused when it resolves differently here."""
    plan = _PLANS.get(settings)
    if plan is None:
        from vsr.plugins import load_registry

        plan = make_plan(load_registry(), preset)
        if plan.settings != settings:
            raise VsrError(
                f"worker {worker_name()}: preset {preset.name!r} resolves to other settings here than on the "
                "driver (other model weights, plugins or vsr version); give every worker the same"
            )
        _PLANS.clear()
        _PLANS[settings] = plan
    return plan


def worker_name() -> str:
    """The device label a local worker was given (``gpu1``, ``cpu0``), else ``host:pid``."""
    return os.environ.get("VSR_WORKER") or f"{socket.gethostname()}:{os.getpid()}"


def run_unit(
    request: UnitRequest,
    on_frame: Callable[[int], None] | None = None,
    plan: RunPlan | None = None,
    log: logging.Logger | None = None,
) -> UnitResult:
    """Upscale one unit; called by an executor (in this process, a local device's, or a Ray task's).

    ``on_frame(n)``: called after each frame encoded, with the count so far; ``plan`` and ``log``: the
    driver's own (in this process), else the plan is remade from the request (:func:`worker_plan`) and the
    stages log to ``vsr.job``.

    Raises:
        VsrError: bad input, a failing encoder (``WriteError``: the destination).
    """
    plan = plan or worker_plan(request.preset, request.settings)
    job = Job(
        input=request.input,
        output=request.partial,
        final_output=request.output,
        registry=plan.registry,
        media=request.media,
        log=log or logging.getLogger("vsr.job"),
        metadata=request.metadata,
    )
    start = time.perf_counter()
    unit = request.unit
    if unit is None and request.in_order is not None:
        return _run_in_order(plan, job, request, on_frame)
    if unit is None:
        frames = _count(build_pipeline(plan, job).frames(), on_frame)
        return UnitResult(frames, time.perf_counter() - start, worker_name())
    job = replace(job, start_index=unit.prime_index, after_pts=unit.prime_after_pts, until_pts=unit.until_pts)
    pipeline = build_pipeline(plan, job)
    encoder = segmenter_of(pipeline.encoder)
    if encoder is None:
        raise VsrError(f"{shown(request.input)}: the encoder cannot write segments with these options")
    done: list[Segment] = []

    def record(segment: Segment, carry: State) -> None:
        done.append(segment)

    whole = SegmentPolicy(checkpoint=float("inf"), max_seconds=float("inf"))
    sink = functools.partial(
        write_segments,
        encoder=encoder,
        directory=request.work_dir,
        policy=whole,
        record=record,
        number=unit.number,
        encode_from=unit.first_index,
    )
    frames = _count(pipeline.frames(sink), on_frame)
    if not done:
        raise VsrError(f"{shown(request.input)}: frames {unit.first_index}+ of unit {unit.number} could not be decoded")
    return UnitResult(frames, time.perf_counter() - start, worker_name(), done[0])


def _count(frames: Iterator[Any], on_frame: Callable[[int], None] | None) -> int:
    count = 0
    for _ in frames:
        count += 1
        if on_frame is not None:
            on_frame(count)
    return count


def _run_in_order(plan: RunPlan, job: Job, request: UnitRequest, on_frame: Callable[[int], None] | None) -> UnitResult:
    """The rest of a video in order: resumed after the work folder's last segment, with its carried state."""
    assert request.in_order is not None
    start = time.perf_counter()
    work = WorkDir(request.output, request.identity, job.log)
    work.load()
    job = replace(job, start_index=work.frames_done, after_pts=work.after_pts)
    pipeline = build_pipeline(plan, job, work.carried())
    encoder = segmenter_of(pipeline.encoder)
    if encoder is None:
        raise VsrError(f"{shown(request.input)}: the encoder cannot write segments with these options")
    sink = functools.partial(encode_segments, encoder=encoder, work=work, policy=request.in_order)
    frames = _count(pipeline.frames(sink), on_frame)
    return UnitResult(frames, time.perf_counter() - start, worker_name(), resumed_at=job.start_index)
