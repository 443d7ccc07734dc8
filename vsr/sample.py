"""A short sample clip vsr can make by itself: flat-shaded cartoon scene with a tone.

It gives new users (and tests) a real H.264/AAC file to upscale without
downloading anything: sky gradient, hills with dark outlines, a sun that
moves, a bouncing ball and a stripe pattern that shows detail recovery.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr.errors import VsrError


def cartoon_frame(index: int, width: int, height: int, fps: float) -> np.ndarray:
    """One RGB frame of the sample scene at time ``index / fps``."""
    t = index / fps
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), dtype=np.float32)
    sky = y / max(height - 1, 1)
    img[..., 0] = 90 + 80 * sky
    img[..., 1] = 160 + 60 * sky
    img[..., 2] = 235 - 20 * sky
    # sun, moving left to right
    sx, sy, sr = width * (0.15 + 0.1 * t), height * 0.25, height * 0.12
    d = np.hypot(x - sx, y - sy)
    img[d < sr] = (255, 214, 60)
    img[(d >= sr) & (d < sr + 1.5)] = (120, 80, 20)
    # hills with outlines
    ridge = height * (0.62 + 0.08 * np.sin(x / width * 2 * math.pi * 1.5 + 0.5))
    img[y > ridge] = (70, 170, 80)
    img[np.abs(y - ridge) < 1.2] = (20, 50, 25)
    # stripes (fine detail) on a sign
    sign = (x > width * 0.70) & (x < width * 0.90) & (y > height * 0.40) & (y < height * 0.58)
    img[sign] = np.where(((x[sign] // 2) % 2)[:, None] == 0, (250, 250, 250), (200, 40, 40))
    # bouncing ball with outline
    bx = width * (0.3 + 0.25 * math.sin(t * 2.0))
    by = height * (0.75 - 0.3 * abs(math.sin(t * 3.0)))
    br = height * 0.08
    d = np.hypot(x - bx, y - by)
    img[d < br] = (230, 90, 160)
    img[(d >= br) & (d < br + 1.5)] = (40, 10, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_sample(
    path: Path, seconds: float = 2.0, width: int = 192, height: int = 108, fps: int = 24, audio: bool = True
) -> Path:
    """Write the sample clip (H.264 + AAC sine tone) to ``path`` atomically."""
    if width % 2 or height % 2:
        raise VsrError("sample width and height must be even")
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    frames = max(1, round(seconds * fps))
    try:
        with av.open(str(tmp), mode="w") as out:
            video = out.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": "16", "preset": "medium"}
            video.codec_context.colorspace = 6  # SMPTE170M (BT.601): the SD convention
            video.codec_context.color_range = 1
            video.codec_context.color_primaries = 6
            video.codec_context.color_trc = 6
            sound = out.add_stream("aac", rate=48000, layout="mono") if audio else None
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(cartoon_frame(i, width, height, fps), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace="itu601", dst_color_range="MPEG")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if sound is not None:
                rate, chunk = 48000, 1024
                total = int(seconds * rate)
                for start in range(0, total, chunk):
                    n = min(chunk, total - start)
                    tone = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(start, start + n) / rate))
                    aframe = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None, :], format="fltp", layout="mono")
                    aframe.sample_rate = rate
                    aframe.pts = start
                    aframe.time_base = Fraction(1, rate)
                    out.mux(sound.encode(aframe))
                out.mux(sound.encode(None))
        tmp.replace(path)
    except (OSError, av.error.FFmpegError) as exc:
        raise VsrError(f"{path}: cannot write sample: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
