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
    """The animation in ``path`` if it is an animated WebP (its VP8X header says so, one frame or more), else None.

    Every frame is read once (Pillow sets a frame's duration when it loads it), so transparency that appears
    after the first frame is seen too.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with path.open("rb") as fh:
            head = fh.read(21)
        # RIFF....WEBP, then the extended header's chunk (VP8X) whose flags byte says "animation" (0x02)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or head[12:16] != b"VP8X" or not head[20] & 0x02:
            return None
        with Image.open(path) as image:
            if image.format != "WEBP":
                return None
            times, at, last, alpha = [], 0, 100, False
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                image.load()
                times.append(at)
                last = int(image.info.get("duration") or 100)
                at += last
                if not alpha and image.mode in ("RGBA", "LA", "PA"):  # Pillow hands out RGBA whether it is used
                    alpha = int(np.asarray(image.getchannel("A")).min()) < 255
            return Animation(image.width, image.height, tuple(times), alpha, last)
    except (OSError, UnidentifiedImageError, ValueError, IndexError):
        return None


def webp_frames(path: Path, alpha: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
    """Each frame of an animated WebP as it is shown (Pillow composes partial frames): RGB, its alpha, and how
    long it is shown in milliseconds (as :func:`animated_webp` counts it)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            for index in range(image.n_frames):
                image.seek(index)
                rgba = np.asarray(image.convert("RGBA"))  # loads the frame, which sets its duration
                duration = int(image.info.get("duration") or 100)
                yield (
                    np.ascontiguousarray(rgba[..., :3]),
                    np.ascontiguousarray(rgba[..., 3]) if alpha else None,
                    duration,
                )
    except (OSError, ValueError) as exc:
        raise VsrError(f"{shown(path)}: decoding the animated WebP failed ({exc})") from None
