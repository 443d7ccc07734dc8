"""Low-resolution frames from high-resolution ones: x4 area downscaling, optionally degraded.

A model learns to undo what its training pairs did to the low-resolution
side. Clean area downscaling teaches it to sharpen; adding the artefacts of
real footage, in the spirit of Real-ESRGAN's degradation model (blur before
the downscale, then sensor noise, then lossy compression), teaches it to
remove them too. Every random choice comes from the ``numpy`` generator
passed in, so a seed reproduces a dataset exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

SCALE = 4


@dataclass
class Degradation:
    """What happens to a frame on its way to low resolution (ranges are sampled per frame).

    Attributes:
        enabled: off gives clean area downscaling.
        blur_prob: chance of a Gaussian blur before downscaling.
        blur_sigma: range of the blur's sigma, in high-resolution pixels.
        noise_prob: chance of Gaussian noise after downscaling.
        noise_sigma: range of the noise's sigma, in 8-bit levels.
        jpeg_prob: chance of a JPEG round trip at the end.
        jpeg_quality: range of the JPEG quality (FFmpeg's mjpeg q scale is derived from it).
    """

    enabled: bool = True
    blur_prob: float = 0.7
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 10.0)
    jpeg_prob: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)


def crop_to_multiple(image: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Drop the right and bottom pixels that do not fill a whole ``scale`` block."""
    h, w = image.shape[0] // scale * scale, image.shape[1] // scale * scale
    return image[:h, :w]


def area_downscale(image: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Mean of each ``scale`` x ``scale`` block (exact area resampling), rounded to uint8."""
    image = crop_to_multiple(image, scale)
    h, w, c = image.shape
    blocks = image.reshape(h // scale, scale, w // scale, scale, c).astype(np.float32)
    return np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (radius 3 sigma, reflected edges) of an 8-bit image, as float32."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    out = image.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        out = sum(k * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, k in enumerate(kernel))  # type: ignore[assignment]
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100, libjpeg's scale mapped to mjpeg's qscale) and decode back."""
    qscale = int(np.clip(round(2 + (100 - quality) * 29 / 99), 2, 31))
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": str(qscale), "qmax": str(qscale)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuvj420p")
    packets = ctx.encode(frame) + ctx.encode(None)
    decoder = av.CodecContext.create("mjpeg", "r")
    decoded = [f for p in packets for f in decoder.decode(p)]
    return decoded[0].to_ndarray(format="rgb24")


def degrade(hr: np.ndarray, rng: np.random.Generator, spec: Degradation | None = None) -> np.ndarray:
    """The low-resolution partner of ``hr`` (uint8 RGB whose sides are multiples of 4)."""
    spec = spec or Degradation(enabled=False)
    if not spec.enabled:
        return area_downscale(hr)
    image: np.ndarray = hr
    if rng.random() < spec.blur_prob:
        image = gaussian_blur(hr, float(rng.uniform(*spec.blur_sigma)))
    lr = area_downscale(np.clip(image, 0, 255))
    if rng.random() < spec.noise_prob:
        noisy = lr.astype(np.float32) + rng.normal(0.0, float(rng.uniform(*spec.noise_sigma)), lr.shape)
        lr = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if rng.random() < spec.jpeg_prob and min(lr.shape[:2]) >= 8 and lr.shape[0] % 2 == 0 == lr.shape[1] % 2:
        lr = jpeg_roundtrip(lr, int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1)))
    return lr
