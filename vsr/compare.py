"""Pictures to judge an upscale by eye: ``vsr compare``.

The still picture shows, for each chosen time, the input enlarged by bicubic
interpolation beside the output (and the unsmoothed output when given), then
a 2x crop of the most detailed part of each, its place marked with a box in
the whole frames. The clip puts the same columns side by side, frame by
frame, so flicker can be seen and not only measured.

Everything goes through PyAV (decoding, the bicubic enlargement, PNG and
H.264 encoding); numpy lays out the pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import UsageError, VsrError
from vsr.files import temp_name
from vsr.media import ffmpeg_reason, open_input, to_rgb, video_stream

#: Widest whole-frame panel in the still picture (larger outputs are shown shrunk, the crops stay native).
PANEL_WIDTH = 960
#: Widest side-by-side clip; past it the clip shows the detailed region at native pixels instead.
VIDEO_WIDTH = 3840
GAP = 4
BOX = np.array([255, 200, 0], dtype=np.uint8)
BACKGROUND = 40


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:02.5`` or ``01:02:03``."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise UsageError(f"--at {text!r}: expected seconds (12.5) or [HH:]MM:SS")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def eight_bit(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.dtype == np.uint8 else np.round(pixels / 257.0).astype(np.uint8)


def enlarge(pixels: np.ndarray, height: int, width: int, interpolation: str = "BICUBIC") -> np.ndarray:
    """RGB pixels resized by FFmpeg's swscale (``BICUBIC``, ``AREA``, ...)."""
    if pixels.shape[:2] == (height, width):
        return pixels
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(eight_bit(pixels)), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation=interpolation).to_ndarray()


@dataclass
class Video:
    """One file to compare: its path and the label of its column."""

    path: Path
    label: str


def duration(path: Path) -> float:
    with open_input(path) as container:
        stream = video_stream(container, path)
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / av.time_base


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """The RGB frame shown at ``seconds`` after the video stream's start (the last frame past the end)."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        base = stream.time_base
        start = stream.start_time or 0
        target = start + round(Fraction(seconds).limit_denominator(1_000_000) / base)
        try:
            container.seek(int(target), stream=stream, backward=True)
        except av.error.FFmpegError:
            container.seek(0)
        chosen = None
        try:
            for frame in container.decode(stream):
                if chosen is not None and frame.pts is not None and frame.pts > target:
                    break
                chosen = frame
        except av.error.FFmpegError as exc:
            if chosen is None:
                raise VsrError(f"{path}: cannot decode ({ffmpeg_reason(exc)})") from None
        if chosen is None:
            raise VsrError(f"{path}: no video frame at {seconds:g} s")
        return eight_bit(to_rgb(chosen)[0])


def detail_box(pixels: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """Top-left corner of the ``height`` x ``width`` region with the most detail (gradient energy)."""
    luma = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    c = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = c[height:, width:] - c[:-height, width:] - c[height:, :-width] + c[:-height, :-width]
    step_y, step_x = max(1, height // 4), max(1, width // 4)
    grid = sums[::step_y, ::step_x]
    y, x = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(y * step_y), int(x * step_x)


def _boxed(panel: np.ndarray, top: int, left: int, height: int, width: int, thickness: int = 2) -> np.ndarray:
    panel = panel.copy()
    bottom, right = min(panel.shape[0], top + height), min(panel.shape[1], left + width)
    panel[top : top + thickness, left:right] = BOX
    panel[max(top, bottom - thickness) : bottom, left:right] = BOX
    panel[top:bottom, left : left + thickness] = BOX
    panel[top:bottom, max(left, right - thickness) : right] = BOX
    return panel


def _row(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    spacer = np.full((height, gap, 3), BACKGROUND, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        if parts:
            parts.append(spacer)
        parts.append(np.pad(panel, ((0, height - panel.shape[0]), (0, 0), (0, 0)), constant_values=BACKGROUND))
    return np.concatenate(parts, axis=1)


def _stack(rows: Sequence[np.ndarray], gap: int) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    parts: list[np.ndarray] = []
    for row in rows:
        if parts:
            parts.append(np.full((gap, width, 3), BACKGROUND, dtype=np.uint8))
        parts.append(np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=BACKGROUND))
    return np.concatenate(parts, axis=0)


def still(source: Path, outputs: Sequence[Video], times: Sequence[float]) -> np.ndarray:
    """The comparison picture: per time, a row of whole frames and a row of 2x crops."""
    blocks = []
    for seconds in times:
        shown = [frame_at(v.path, seconds) for v in outputs]
        height, width = shown[-1].shape[:2]
        for video, pixels in zip(outputs, shown, strict=True):
            if pixels.shape[:2] != (height, width):
                raise UsageError(f"{video.path}: frames are {pixels.shape[1]}x{pixels.shape[0]}, not {width}x{height}")
        columns = [enlarge(frame_at(source, seconds), height, width), *shown]
        panel_w = min(width, PANEL_WIDTH)
        panel_h = max(2, round(height * panel_w / width))
        crop_h, crop_w = max(1, panel_h // 2), max(1, panel_w // 2)
        top, left = detail_box(shown[-1], crop_h, crop_w)
        shrink = panel_w / width
        whole = [
            _boxed(
                enlarge(c, panel_h, panel_w, "AREA"),
                int(top * shrink),
                int(left * shrink),
                max(2, int(crop_h * shrink)),
                max(2, int(crop_w * shrink)),
            )
            for c in columns
        ]
        crops = [c[top : top + crop_h, left : left + crop_w].repeat(2, axis=0).repeat(2, axis=1) for c in columns]
        blocks.append(_stack([_row(whole), _row(crops)], GAP))
    return _stack(blocks, 4 * GAP)


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(temp_name(path.name, ".compare", path.suffix))
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, av.error.FFmpegError) as exc:
        raise VsrError(f"{path}: cannot write: {ffmpeg_reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def side_by_side(source: Path, outputs: Sequence[Video], path: Path, start: float, seconds: float) -> int:
    """Write a clip of the columns side by side (H.264, near lossless), ``seconds`` long from ``start``.

    Returns the number of frames written. Wider than :data:`VIDEO_WIDTH` in all, each column shows the
    first frame's most detailed region at native pixels instead of the whole frame.
    """
    from vsr.pairing import by_time

    lead = outputs[-1].path  # the output's frames, each beside what the others show at its time
    time_base = Fraction(1, 90000)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        region: tuple[int, int, int, int] | None = None
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream: Any = None
            paired = by_time(lead, source, *(v.path for v in outputs[:-1]))
            for t, out_pixels, rest in paired:
                pixels = [eight_bit(p) for p in (*rest, out_pixels)]
                if t < start - 1e-6:
                    continue
                if t >= start + seconds:
                    break
                height, width = pixels[-1].shape[:2]
                columns = [enlarge(pixels[0], height, width), *pixels[1:]]
                if region is None:
                    cols = len(columns)
                    crop_w = min(width, (VIDEO_WIDTH - GAP * (cols - 1)) // cols) // 2 * 2
                    crop_h = height if crop_w == width else min(height, crop_w * 9 // 16) // 2 * 2
                    top, left = detail_box(pixels[-1], crop_h, crop_w) if crop_w < width else (0, 0)
                    region = (top, left, crop_h, crop_w)
                top, left, crop_h, crop_w = region
                picture = _row([c[top : top + crop_h, left : left + crop_w] for c in columns])
                picture = picture[: picture.shape[0] // 2 * 2, : picture.shape[1] // 2 * 2]
                if stream is None:
                    stream = container.add_stream("libx264", rate=24)
                    stream.width, stream.height, stream.pix_fmt = picture.shape[1], picture.shape[0], "yuv420p"
                    stream.codec_context.time_base = time_base
                    stream.options = {"crf": "12", "preset": "veryfast"}  # near lossless: the shimmer stays visible
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts = round(t / time_base)
                frame.time_base = stream.codec_context.time_base
                container.mux(stream.encode(frame))
                count += 1
            if stream is None:
                raise VsrError(f"{path}: no frames between {start:g} s and {start + seconds:g} s")
            container.mux(stream.encode(None))

    _write_atomic(path, write)
    return count
