"""Clips with known motion and known truth, for the temporal smoother's tests and bench.

The world is a real photograph (``tests/data/astronaut_192.png``, NASA, public
domain) enlarged to 384 px. Each clip is a list of ground-truth frames at the
output size; the input frames are their 4x area-downscales with light sensor
noise (Gaussian, sigma 2 levels), as a camera would deliver them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).parent / "data" / "astronaut_192.png"
HEIGHT, WIDTH = 192, 256  # truth (output) size; inputs are 48 x 64


def world() -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (384, 384), interpolation=cv2.INTER_CUBIC)


def pan(frames: int = 12, step: int = 4) -> list[np.ndarray]:
    """A horizontal pan, ``step`` output pixels (step/4 input pixels) per frame."""
    w = world()
    return [w[96 : 96 + HEIGHT, 40 + step * t : 40 + step * t + WIDTH].copy() for t in range(frames)]


def zoom(frames: int = 12, rate: float = 0.015) -> list[np.ndarray]:
    """A zoom in on the centre, ``rate`` more magnification per frame."""
    w = world()
    out = []
    for t in range(frames):
        z = 1.0 + rate * t
        m = np.array([[z, 0, WIDTH / 2 - z * 192], [0, z, HEIGHT / 2 - z * 192]], dtype=np.float64)
        out.append(cv2.warpAffine(w, m, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return out


def moving_object(frames: int = 12, step: int = 8) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured 48 px square crossing a still background; also each frame's object mask."""
    w = world()
    background = w[96 : 96 + HEIGHT, 40 : 40 + WIDTH]
    patch = np.ascontiguousarray(w[20:68, 300:348][::-1, ::-1])  # another part of the photo, turned over
    clips, masks = [], []
    for t in range(frames):
        frame, mask = background.copy(), np.zeros((HEIGHT, WIDTH), dtype=bool)
        x = 16 + step * t
        frame[72:120, x : x + 48] = patch
        mask[72:120, x : x + 48] = True
        clips.append(frame)
        masks.append(mask)
    return clips, masks


def cut(frames: int = 12) -> list[np.ndarray]:
    """A pan whose second half is another picture (a hard cut at frame ``frames // 2``)."""
    first = pan(frames)
    other = [255 - f[::-1].copy() for f in pan(frames)]
    return first[: frames // 2] + other[frames // 2 :]


def inputs(truths: list[np.ndarray], sigma: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """What a camera hands over: 4x area-downscaled truth with sensor noise."""
    rng = np.random.default_rng(seed)
    out = []
    for truth in truths:
        small = cv2.resize(truth, (WIDTH // 4, HEIGHT // 4), interpolation=cv2.INTER_AREA).astype(np.float32)
        out.append(np.clip(np.round(small + rng.normal(0, sigma, small.shape)), 0, 255).astype(np.uint8))
    return out
