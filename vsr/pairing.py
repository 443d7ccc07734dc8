"""Frames of two or more videos paired by time, and the check that they are an input and its upscale.

``vsr metrics`` and ``vsr compare`` judge an upscale against its input. They
pair frames by presentation time, not by order, so an output with more frames
than its input (a field-rate deinterlace doubles them) meets the input frame
shown at the same moment; and they refuse, with one line, a pair that is not
an input and its upscale: a size ratio that is not a whole scale (or not the
one asked for), or durations more than a frame apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vsr.errors import UsageError, shown
from vsr.media import open_input, to_rgb, video_stream


@dataclass(frozen=True)
class Clip:
    """What the pair check needs of a video: its size, its length and its frame time (seconds)."""

    path: Path
    width: int
    height: int
    duration: float
    frame: float


def describe(path: Path) -> Clip:
    with open_input(path) as container:
        stream = video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        if stream.duration is not None:
            length = float(stream.duration * stream.time_base)
        else:
            length = float(container.duration or 0) / 1_000_000
        return Clip(path, stream.codec_context.width, stream.codec_context.height, length, float(1 / rate))


def check_pair(original: Path, upscaled: Path, scale: int | None = None) -> int:
    """The scale of ``upscaled`` over ``original``; refuses a pair that is not an input and its upscale.

    Raises:
        UsageError: sizes whose ratio is not one whole number of at least 2 (or not ``scale``), a still
            beside a video, or durations more than a frame of the input apart.
    """
    low, high = describe(original), describe(upscaled)
    ratio = high.width / low.width if low.width else 0.0
    whole = round(ratio)
    least = 1 if scale == 1 else 2  # the same size is an upscale only of an x1 model, asked for with --scale 1
    if whole < least or abs(ratio - whole) > 1e-6 or high.height != low.height * whole:
        raise UsageError(
            f"{shown(upscaled)} ({high.width}x{high.height}) is not a whole-number upscale of {shown(original)} "
            f"({low.width}x{low.height}): give the input it was made from"
        )
    if scale is not None and whole != scale:
        raise UsageError(f"{shown(upscaled)} is {whole}x {shown(original)}, not {scale}x as asked")
    if bool(low.duration) != bool(high.duration):
        raise UsageError(f"{shown(original)} and {shown(upscaled)}: one is a still picture, the other a video")
    if low.duration and high.duration and abs(low.duration - high.duration) > low.frame + 1e-3:
        raise UsageError(
            f"{shown(upscaled)} lasts {high.duration:.3f} s and {shown(original)} {low.duration:.3f} s: "
            "more than a frame apart, so it is not this input's upscale"
        )
    return whole


def timed_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """Every frame of ``path``'s video as (seconds from the stream's start, RGB pixels)."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        for index, frame in enumerate(container.decode(stream)):
            pts = frame.pts if frame.pts is not None else None
            seconds = float((pts - start) * stream.time_base) if pts is not None else float(index)
            yield seconds, to_rgb(frame)[0]


def by_time(lead: Path, *others: Path) -> Iterator[tuple[float, np.ndarray, list[np.ndarray]]]:
    """For each frame of ``lead``: its time (seconds), its pixels, and the frame each of ``others`` shows then."""
    followers = [timed_frames(path) for path in others]
    current: list[tuple[float, np.ndarray] | None] = [next(f, None) for f in followers]
    ahead: list[tuple[float, np.ndarray] | None] = [next(f, None) for f in followers]
    for seconds, pixels in timed_frames(lead):
        for i, follower in enumerate(followers):
            while (upcoming := ahead[i]) is not None and upcoming[0] <= seconds + 1e-4:
                current[i], ahead[i] = upcoming, next(follower, None)
        if any(c is None for c in current):
            return
        yield seconds, pixels, [c[1] for c in current if c is not None]
