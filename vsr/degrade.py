"""Low-resolution frames from high-resolution ones: area downscaling, optionally degraded like real footage.

A model learns to undo what its training pairs did to the low-resolution
side. Clean area downscaling teaches it to sharpen; adding the artefacts of
real footage teaches it to remove them too. Two pipelines:

- **first order** (the default), in the spirit of Real-ESRGAN: blur before the
  downscale, sensor noise, then lossy compression;
- **second order** (``second_order``), Real-ESRGAN's own model (Wang et al.
  2021, section 3): two rounds of (blur, random resize, Gaussian or Poisson
  noise, JPEG), then the resize to the target size and a sinc filter
  (ringing) in random order, and a last compression (Real-ESRGAN also puts
  it before the resize; here it stays last, at the size a video would have).

The last compression is, for video sources, a **round trip through a real
video encoder** (x264 or x265 via PyAV at a random CRF, in a short GOP whose
frames are the source's own neighbouring frames): the frame lands at a random
position of the GOP, so pairs carry both intra and inter (motion-compensated)
codec artefacts, as frames of a real video do. Without the neighbours (single
images) the encoder sees one frame and gives intra artefacts only. Where no
codec round trip happens the compression is JPEG.

Every random choice comes from the ``numpy`` generator passed in, so a seed
reproduces a dataset exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

SCALE = 4
#: PyAV decoders of the encoders the codec round trip may use
CODEC_DECODERS = {"libx264": "h264", "libx265": "hevc"}


@dataclass
class Degradation:
    """What happens to a frame on its way to low resolution (ranges are sampled per frame).

    Attributes:
        enabled: off gives clean area downscaling.
        blur_prob: chance of a Gaussian blur before downscaling.
        blur_sigma: range of the blur's sigma, in high-resolution pixels.
        noise_prob: chance of Gaussian noise after downscaling.
        noise_sigma: range of the noise's sigma, in 8-bit levels.
        jpeg_prob: chance of a JPEG round trip at the end (when no codec round trip happens).
        jpeg_quality: range of the JPEG quality (FFmpeg's mjpeg q scale is derived from it).
        codec_prob: chance of a round trip through a video encoder instead of JPEG.
        codecs: the encoders to pick from (PyAV names).
        codec_crf: range of the encoder's CRF (x264/x265 scale: 0 lossless, 51 worst).
        gop: range of the GOP length; the frame's position in it is uniform.
        second_order: Real-ESRGAN's second-order pipeline instead of the first-order one.
    """

    enabled: bool = True
    blur_prob: float = 0.7
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 10.0)
    jpeg_prob: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)
    codec_prob: float = 0.0
    codecs: tuple[str, ...] = ("libx264", "libx265")
    codec_crf: tuple[int, int] = (18, 38)
    gop: tuple[int, int] = (1, 8)
    second_order: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.codecs) - set(CODEC_DECODERS))
        if unknown:
            raise ValueError(f"codecs: {', '.join(unknown)} unknown (known: {', '.join(CODEC_DECODERS)})")
        if not 1 <= self.gop[0] <= self.gop[1] <= 250 or not 0 <= self.codec_crf[0] <= self.codec_crf[1] <= 51:
            raise ValueError("gop must be 1..250 and codec_crf 0..51, each as (low, high)")

    @property
    def frames_needed(self) -> int:
        """How many frames (the frame itself and those before it) a codec round trip may use."""
        return self.gop[1] if self.enabled and self.codec_prob > 0 else 1


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


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


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


def filter2d(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) convolved with a square odd-sized 2-D ``kernel``, reflected edges, via the FFT."""
    radius = kernel.shape[0] // 2
    mode = "reflect" if min(image.shape[:2]) > radius else "edge"
    padded = np.pad(image.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode=mode)
    h, w = padded.shape[:2]
    spectrum = np.fft.rfft2(np.flip(kernel, (0, 1)), s=(h, w))
    out = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) * spectrum[..., None], s=(h, w), axes=(0, 1))
    size = kernel.shape[0] - 1
    return out[size:, size:][: image.shape[0], : image.shape[1]].astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """An anisotropic Gaussian kernel (isotropic when the sigmas are equal), normalised to sum 1."""
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """A circular low-pass (jinc) kernel with ``cutoff`` in radians per pixel: the ringing of sharp resamplers."""
    from math import pi

    r = np.arange(size, dtype=np.float64) - size // 2
    dist = np.hypot(*np.meshgrid(r, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * _bessel_j1(cutoff * dist) / (2 * pi * dist)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * pi)
    return kernel / kernel.sum()


def _bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1 (Numerical Recipes' rational approximations)."""
    ax = np.abs(x)
    small = ax < 8.0
    y = x * x
    num = x * (
        72362614232.0
        + y * (-7895059235.0 + y * (242396853.1 + y * (-2972611.439 + y * (15704.48260 + y * (-30.16036606)))))
    )
    den = 144725228442.0 + y * (2300535178.0 + y * (18583304.74 + y * (99447.43394 + y * (376.9991397 + y))))
    z = 8.0 / np.where(small, 1.0, ax)
    y2 = z * z
    xx = ax - 2.356194491
    p = 1.0 + y2 * (0.183105e-2 + y2 * (-0.3516396496e-4 + y2 * (0.2457520174e-5 + y2 * (-0.240337019e-6))))
    q = 0.04687499995 + y2 * (-0.2002690873e-3 + y2 * (0.8449199096e-5 + y2 * (-0.88228987e-6 + y2 * 0.105787412e-6)))
    large = np.sqrt(0.636619772 / np.where(small, 1.0, ax)) * (np.cos(xx) * p - z * np.sin(xx) * q) * np.sign(x)
    return np.where(small, num / den, large)


def resize(image: np.ndarray, width: int, height: int, method: str) -> np.ndarray:
    """``image`` (uint8 RGB) resized by FFmpeg's swscale: ``AREA``, ``BILINEAR`` or ``BICUBIC``."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=max(1, width), height=max(1, height), interpolation=method).to_ndarray(format="rgb24")


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


def codec_roundtrip(frames: Sequence[np.ndarray], codec: str, crf: int, gop: int) -> np.ndarray:
    """Encode ``frames`` (uint8 RGB, one size) as a clip with a keyframe every ``gop`` frames; the last one decoded.

    Odd sizes are padded (edge pixels) to the even size 4:2:0 needs and cropped back. One thread, and
    x264 without its macroblock tree: with it, the same frames now and then came out differently in a
    long-lived process (seen in the test suite), and a seed must reproduce a dataset.
    """
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = pw, ph, "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
    ctx.gop_size = gop
    ctx.thread_count = 1
    options = {"crf": str(crf), "preset": "medium"}
    if codec == "libx265":
        options["x265-params"] = f"log-level=none:keyint={gop}:min-keyint={gop}:pools=none:frame-threads=1"
    else:
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:mbtree=0"
    ctx.options = options
    packets = []
    for i, rgb in enumerate(frames):
        even = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    decoder = av.CodecContext.create(CODEC_DECODERS[codec], "r")
    decoded = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    last = max(decoded, key=lambda f: f.pts if f.pts is not None else -1)
    return last.to_ndarray(format="rgb24")[:h, :w]


def _compress(
    frames: list[np.ndarray], rng: np.random.Generator, spec: Degradation, jpeg: tuple[int, int]
) -> np.ndarray:
    """The last compression: a codec round trip over ``frames`` (the frame last), or JPEG of the frame."""
    if rng.random() < spec.codec_prob:
        codec = str(rng.choice(spec.codecs))
        crf = int(rng.integers(spec.codec_crf[0], spec.codec_crf[1] + 1))
        gop = int(rng.integers(spec.gop[0], spec.gop[1] + 1))
        position = int(rng.integers(0, min(gop, len(frames))))  # 0: the keyframe (intra only)
        return codec_roundtrip(frames[len(frames) - 1 - position :], codec, crf, gop)
    lr = frames[-1]
    if rng.random() < spec.jpeg_prob and min(lr.shape[:2]) >= 8:
        lr = jpeg_roundtrip(lr, int(rng.integers(jpeg[0], jpeg[1] + 1)))
    return lr


def degrade(
    hr: np.ndarray,
    rng: np.random.Generator,
    spec: Degradation | None = None,
    scale: int = SCALE,
    before: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """The low-resolution partner of ``hr`` (uint8 RGB whose sides are multiples of ``scale``).

    ``before``: the frames that came before ``hr`` in its video (oldest first, same size), for the codec
    round trip's GOP; they get the same blur and noise level (new noise) as ``hr``.
    """
    spec = spec or Degradation(enabled=False)
    if not spec.enabled:
        return area_downscale(hr, scale)
    frames = [*before[-(spec.frames_needed - 1) :], hr] if spec.frames_needed > 1 else [hr]
    if spec.second_order:
        return _second_order(frames, rng, spec, scale)
    sigma = float(rng.uniform(*spec.blur_sigma)) if rng.random() < spec.blur_prob else 0.0
    noise = float(rng.uniform(*spec.noise_sigma)) if rng.random() < spec.noise_prob else 0.0
    lrs = []
    for frame in frames:
        lr = area_downscale(_to_uint8(gaussian_blur(frame, sigma)) if sigma else frame, scale)
        if noise:
            lr = _to_uint8(lr.astype(np.float32) + rng.normal(0.0, noise, lr.shape))
        lrs.append(lr)
    return _compress(lrs, rng, spec, spec.jpeg_quality)


#: Real-ESRGAN's second-order settings (options/train_realesrgan_x4plus.yml): per round, the blur sigma range,
#: the resize probabilities (up, down, keep) and ranges, the Gaussian noise sigma and Poisson scale ranges.
SECOND_ORDER: tuple[dict[str, Any], ...] = (
    {
        "blur": 1.0,
        "sigma": (0.2, 3.0),
        "resize": (0.2, 0.7, 0.1),
        "range": (0.15, 1.5),
        "noise": (1, 30),
        "poisson": (0.05, 3.0),
    },
    {
        "blur": 0.8,
        "sigma": (0.2, 1.5),
        "resize": (0.3, 0.4, 0.3),
        "range": (0.3, 1.2),
        "noise": (1, 25),
        "poisson": (0.05, 2.5),
    },
)


def _second_order(frames: list[np.ndarray], rng: np.random.Generator, spec: Degradation, scale: int) -> np.ndarray:
    """Real-ESRGAN's high-order degradation; each frame of the GOP gets the same kernels, sizes and noise level."""
    h, w = frames[-1].shape[0] // scale, frames[-1].shape[1] // scale
    images = [f.astype(np.float32) for f in frames]
    for stage in SECOND_ORDER:
        if rng.random() < stage["blur"]:
            size = int(rng.choice(np.arange(7, 22, 2)))
            sx = float(rng.uniform(*stage["sigma"]))
            sy = sx if rng.random() < 0.5 else float(rng.uniform(*stage["sigma"]))
            kernel = gaussian_kernel(size, sx, sy, float(rng.uniform(-np.pi, np.pi)))
            if rng.random() < 0.1:
                kernel = sinc_kernel(
                    size, float(rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi))
                )
            images = [filter2d(im, kernel) for im in images]
        up, down, _ = stage["resize"]
        pick = rng.random()
        factor = (
            float(rng.uniform(1, stage["range"][1]))
            if pick < up
            else float(rng.uniform(stage["range"][0], 1))
            if pick < up + down
            else 1.0
        )
        method = str(rng.choice(["AREA", "BILINEAR", "BICUBIC"]))
        if stage is SECOND_ORDER[0]:
            size_h, size_w = round(frames[-1].shape[0] * factor), round(frames[-1].shape[1] * factor)
        else:
            size_h, size_w = round(h * factor), round(w * factor)
        images = [resize(_to_uint8(im), max(8, size_w), max(8, size_h), method).astype(np.float32) for im in images]
        gray = rng.random() < 0.4
        if rng.random() < 0.5:
            sigma = float(rng.uniform(*stage["noise"]))
            images = [im + _noise(rng, im.shape, gray) * sigma for im in images]
        else:
            poisson = float(rng.uniform(*stage["poisson"]))
            images = [im + _poisson(rng, im, gray) * poisson for im in images]
        if stage is SECOND_ORDER[0]:
            quality = int(rng.integers(30, 96))
            images = [jpeg_roundtrip(_to_uint8(im), quality).astype(np.float32) for im in images]
    # the final step: resize to the target and sinc filter, in random order, then the last compression
    method = str(rng.choice(["AREA", "BILINEAR", "BICUBIC"]))
    sinc = (
        sinc_kernel(int(rng.choice(np.arange(7, 22, 2))), float(rng.uniform(np.pi / 3, np.pi)))
        if rng.random() < 0.8
        else None
    )
    first_resize = rng.random() < 0.5
    out = []
    for im in images:
        if first_resize:
            im = resize(_to_uint8(im), w, h, method).astype(np.float32)
        if sinc is not None:
            im = filter2d(im, sinc)
        if not first_resize:
            im = resize(_to_uint8(im), w, h, method).astype(np.float32)
        out.append(_to_uint8(im))
    return _compress(out, rng, spec, (30, 95))


def _noise(rng: np.random.Generator, shape: tuple[int, ...], gray: bool) -> np.ndarray:
    if gray:
        return np.repeat(rng.standard_normal((*shape[:2], 1)), shape[2], axis=2).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _poisson(rng: np.random.Generator, image: np.ndarray, gray: bool) -> np.ndarray:
    """Poisson (shot) noise as Real-ESRGAN draws it, in 8-bit levels before its scale factor."""
    img = np.clip(image, 0, 255) / 255.0
    if gray:
        img = img @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    vals = 2 ** np.ceil(np.log2(max(len(np.unique(np.round(img * 255))), 2)))
    noisy = rng.poisson(img * vals) / vals
    noise = (noisy - img) * 255.0
    return np.repeat(noise, 3, axis=2).astype(np.float32) if gray else noise.astype(np.float32)
