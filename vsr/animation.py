"""Animated WebP, read with Pillow: FFmpeg's WebP decoder reads still WebP only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsr.errors import VsrError, shown


@dataclass(frozen=True)
class Animation:
    """An animated WebP's size, frame count, the time of each frame in milliseconds, and its transparency."""

    width: int
    height: int
    times: tuple[int, ...]
    alpha: bool
    last_ms: int = 100

    @property
    def duration_ms(self) -> int:
        return self.times[-1] + self.last_ms if self.times else 0


def animated_webp(path: Path) -> Animation | None:
    """The animation in ``path`` if it is an animated WebP (more than one frame), else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with path.open("rb") as fh:
            head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return None
        with Image.open(path) as image:
            if image.format != "WEBP" or not getattr(image, "is_animated", False):
                return None
            first = np.asarray(image.convert("RGBA"))[..., 3]
            alpha = bool(first.min() < 255)  # Pillow hands out RGBA whether the picture uses it or not
            times, at, last = [], 0, 100
            for index in range(image.n_frames):
                image.seek(index)
                image.load()  # Pillow sets a frame's duration (ms) when it reads it
                times.append(at)
                last = int(image.info.get("duration") or 100)
                at += last
            return Animation(image.width, image.height, tuple(times), alpha, last)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def webp_frames(path: Path, alpha: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each frame of an animated WebP as it is shown (Pillow composes partial frames): RGB and its alpha."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            for index in range(image.n_frames):
                image.seek(index)
                rgba = np.asarray(image.convert("RGBA"))
                yield np.ascontiguousarray(rgba[..., :3]), (np.ascontiguousarray(rgba[..., 3]) if alpha else None)
    except (OSError, ValueError) as exc:
        raise VsrError(f"{shown(path)}: decoding the animated WebP failed ({exc})") from None
