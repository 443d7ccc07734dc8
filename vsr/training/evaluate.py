"""Did training help? Scores of bicubic, the starting model and the trained networks on the held-out pairs.

Every network is scored the way ``vsr upscale`` would run it: rebuilt in
float32 from its weights (:func:`vsr.models.build.build_network`), its output
clipped and rounded to 8 bits. PSNR and SSIM (``vsr.metrics``: luma SSIM,
7x7 window) are averaged over the held-out crops, leaving out ``scale``
pixels at each border as BasicSR does (padding, not the model, decides those).
Where real VGG19 weights are loaded, the perceptual distance the GAN stage
optimises (L1 of pre-activation ``conv5_4`` features) is scored too: lower
is better.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vsr.frame import from_levels
from vsr.metrics import psnr, ssim

#: the GAN stage exports its EMA unless the EMA's PSNR is this much below the raw generator's
GAN_EMA_TOLERANCE_DB = 0.5


@dataclass
class Score:
    """One row of the table."""

    model: str
    psnr: float
    ssim: float
    perceptual: float | None = None


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """``lr`` (N, H, W, 3 in 0..1) enlarged ``scale`` times with bicubic interpolation (Keys, a = -0.5)."""
    from keras import ops

    h, w = lr.shape[1:3]
    return np.asarray(ops.image.resize(lr, (h * scale, w * scale), interpolation="bicubic"))


def predict(network: Any, lr: np.ndarray, batch: int = 4) -> np.ndarray:
    """``network``'s output for ``lr``, a few crops at a time."""
    return np.concatenate([np.asarray(network(lr[i : i + batch], training=False)) for i in range(0, len(lr), batch)])


def score(name: str, sr: np.ndarray, hr: np.ndarray, border: int, vgg: Any = None) -> Score:
    """Mean PSNR/SSIM (and perceptual distance with ``vgg``) of ``sr`` against ``hr``, both (N, H, W, 3) in 0..1."""
    # clipped and rounded to 8 bits, as the upscaler writes its output
    sr8, hr8 = (from_levels(np.asarray(x, np.float32) * 255.0, np.dtype(np.uint8)) for x in (sr, hr))
    inner = (slice(None), slice(border, -border or None), slice(border, -border or None))
    sr8, hr8 = sr8[inner], hr8[inner]
    psnrs = [min(psnr(a, b), 99.0) for a, b in zip(sr8, hr8, strict=True)]
    ssims = [ssim(a, b) for a, b in zip(sr8, hr8, strict=True)]
    perceptual = None
    if vgg is not None:
        from vsr.training.losses import perceptual_loss

        distances = [perceptual_loss(vgg, a[None] / 255.0, b[None] / 255.0) for a, b in zip(sr8, hr8, strict=True)]
        perceptual = float(np.mean([float(d) for d in distances]))
    return Score(name, float(np.mean(psnrs)), float(np.mean(ssims)), perceptual)


def choose(ema: Score, generator: Score, gan: bool) -> tuple[str, str]:
    """Which network to export (``"ema"`` or ``"generator"``) and why, in a phrase."""
    gap = f"{ema.psnr:.2f} dB vs the generator's {generator.psnr:.2f} dB"
    if gan:
        if ema.psnr >= generator.psnr - GAN_EMA_TOLERANCE_DB:
            return "ema", f"after the GAN stage the EMA is kept unless over {GAN_EMA_TOLERANCE_DB} dB worse ({gap})"
        return "generator", f"after the GAN stage the EMA is over {GAN_EMA_TOLERANCE_DB} dB worse ({gap})"
    if ema.psnr >= generator.psnr:
        return "ema", f"higher held-out PSNR ({gap})"
    return "generator", f"higher held-out PSNR ({generator.psnr:.2f} dB vs the EMA's {ema.psnr:.2f} dB)"


def table(scores: list[Score], exported: str | None = None) -> str:
    """The scores as aligned text lines, the exported row marked."""
    with_perceptual = any(s.perceptual is not None for s in scores)
    head = f"{'model':<28} {'PSNR dB':>8} {'SSIM':>7}" + (f" {'perceptual':>10}" if with_perceptual else "")
    lines = [head]
    for s in scores:
        line = f"{s.model:<28} {s.psnr:8.2f} {s.ssim:7.4f}"
        if with_perceptual:
            line += f" {s.perceptual:10.4f}" if s.perceptual is not None else f" {'-':>10}"
        lines.append(line + ("  <- exported" if exported and s.model.startswith(exported) else ""))
    return "\n".join(lines)


def as_json(scores: list[Score]) -> list[dict[str, Any]]:
    return [asdict(s) for s in scores]
