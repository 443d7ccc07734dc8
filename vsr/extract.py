"""``vsr extract``: training pairs from videos: ``hr/NAME.png`` and its ``scale`` times smaller ``lr/NAME.png``."""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.degrade import SCALE, Degradation, degrade
from vsr.errors import VsrError
from vsr.files import write_atomic
from vsr.media import ffmpeg_reason, open_input, to_rgb, video_stream, write_png
from vsr.metrics import content_change, hsv


@dataclass
class ExtractOptions:
    """Which frames become pairs, and how.

    Attributes:
        every: keep one frame in ``every`` (after the duplicate check).
        max_per_video: stop after this many pairs per video (0: no limit).
        per_scene: at most this many pairs per scene (0: no limit); cuts are found as the temporal
            smoother finds them (mean HSV change above ``cut_threshold``, PySceneDetect's measure).
        cut_threshold: the HSV change that starts a new scene.
        min_change: skip a frame whose mean difference to the last kept one is below this (8-bit levels).
        crop: HR crop side in pixels, a multiple of ``scale`` (0: the whole frame); the position is random.
        max_side: HR frames larger than this are cropped to it (0: no limit).
        seed: seed of every random choice (crops, degradations).
        degradation: what happens to the LR side (by default with the codec round trip: these are videos).
        scale: HR size over LR size (4 for x4 models, 2 or 1 to fine-tune x2 or x1 ones).
    """

    every: int = 12
    max_per_video: int = 0
    per_scene: int = 0
    cut_threshold: float = 27.0
    min_change: float = 1.0
    crop: int = 0
    max_side: int = 0
    seed: int = 0
    degradation: Degradation = field(default_factory=lambda: Degradation(codec_prob=VIDEO_CODEC_PROB))
    scale: int = SCALE


#: how often a pair from a video goes through a real video encoder (the rest get JPEG or nothing)
VIDEO_CODEC_PROB = 0.8


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """A small grey version for the near-duplicate test."""
    grey = rgb.astype(np.float32).mean(axis=2)
    step = max(1, min(grey.shape) // 32)
    return grey[::step, ::step]


def _window(shape: tuple[int, ...], opts: ExtractOptions, rng: np.random.Generator) -> tuple[slice, slice]:
    """Where the HR crop of a frame lies: whole ``scale`` blocks, at a random position if cropped."""
    scale = opts.scale
    height, width = shape[0] // scale * scale, shape[1] // scale * scale
    side = (opts.crop or opts.max_side) // scale * scale
    h, w = (min(side, height), min(side, width)) if side else (height, width)
    y = int(rng.integers(0, height - h + 1)) // scale * scale
    x = int(rng.integers(0, width - w + 1)) // scale * scale
    return slice(y, y + h), slice(x, x + w)


def _rgb8(frame: av.VideoFrame) -> np.ndarray:
    rgb, _ = to_rgb(frame)
    return rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)


def extract(
    videos: list[Path], out_dir: Path, opts: ExtractOptions, on_pair: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Write the pairs of every video into ``out_dir``; returns the manifest (also written as ``manifest.json``)."""
    if opts.every < 1 or opts.scale not in (1, 2, 4) or opts.crop % opts.scale or opts.crop < 0 or opts.max_side < 0:
        raise VsrError("every must be >= 1, scale 1, 2 or 4, and crop a multiple of the scale")
    for sub in ("hr", "lr"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(opts.seed)
    pairs: list[dict[str, Any]] = []
    for video in videos:
        kept = scene = in_scene = 0
        last: np.ndarray | None = None
        last_hsv: np.ndarray | None = None
        # the frames before the current one, for the codec round trip's GOP (decoded, not yet converted)
        recent: deque[av.VideoFrame] = deque(maxlen=max(0, opts.degradation.frames_needed - 1))
        with open_input(video) as container:
            stream = video_stream(container, video)
            time_base = stream.time_base or Fraction(1, 25)
            try:
                for index, frame in enumerate(container.decode(stream)):
                    if opts.max_per_video and kept >= opts.max_per_video:
                        break
                    before = list(recent)
                    if recent.maxlen:
                        recent.append(frame)
                    if opts.per_scene:  # every frame is looked at (small), so no cut is missed
                        width = min(64, frame.width)
                        small = frame.to_ndarray(
                            format="rgb24", width=width, height=max(2, frame.height * width // frame.width)
                        )
                        current = hsv(small)
                        if last_hsv is not None and content_change(last_hsv, current) > opts.cut_threshold:
                            scene, in_scene = scene + 1, 0
                            before = []  # an encoder starts a new GOP at a cut
                            recent.clear()
                            recent.append(frame)
                        last_hsv = current
                        if in_scene >= opts.per_scene:
                            continue
                    if index % opts.every:
                        continue
                    rgb = _rgb8(frame)
                    thumb = _thumb(rgb)
                    if last is not None and last.shape == thumb.shape and np.abs(thumb - last).mean() < opts.min_change:
                        continue  # nearly the same picture as the last pair: teaches nothing new
                    rows, cols = _window(rgb.shape, opts, rng)
                    hr = rgb[rows, cols]
                    if min(hr.shape[:2]) < 4 * opts.scale:
                        raise VsrError(f"{video}: frames of {rgb.shape[1]}x{rgb.shape[0]} are too small for pairs")
                    neighbours = [n[rows, cols] for n in map(_rgb8, before) if n.shape == rgb.shape]
                    lr = degrade(hr, rng, opts.degradation, opts.scale, neighbours)
                    name = f"{video.stem}_{index:06d}.png"
                    write_png(out_dir / "hr" / name, hr)
                    write_png(out_dir / "lr" / name, lr)
                    last = thumb
                    kept += 1
                    in_scene += 1
                    pairs.append(
                        {
                            "name": name,
                            "source": str(video),
                            "frame": index,
                            "scene": scene,
                            "time": float(frame.pts * time_base) if frame.pts is not None else None,
                            "hr_size": [hr.shape[1], hr.shape[0]],
                            "lr_size": [lr.shape[1], lr.shape[0]],
                        }
                    )
                    if on_pair is not None:
                        on_pair(len(pairs))
            except av.error.FFmpegError as exc:
                raise VsrError(f"{video}: decoding failed ({ffmpeg_reason(exc)})") from None
    manifest = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scale": opts.scale,
        "options": {**asdict(opts)},
        "pairs": pairs,
    }
    write_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest
