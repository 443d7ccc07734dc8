"""Temporal-stability and fidelity metrics for upscaled video.

- **flicker**: mean absolute frame-to-frame change of the output, in 8-bit
  levels, measured only where the *input* did not change (so real motion does
  not count). Per-frame ESRGAN texture shimmer in still areas shows up here.
- **motion-compensated flicker** (``mc_flicker``): the same on moving
  pictures. The motion between consecutive *input* frames is estimated
  (:mod:`vsr.motion`, dense DIS flow), the previous output is warped by it
  (scaled to the output) and compared with the current output, over the
  pixels where the warped previous input predicts the current input
  (:func:`vsr.motion.compensate`'s error under ``occlusion_threshold``): pans,
  zooms and moving objects count, occlusions and new content do not.
- **ghosting**: mean absolute difference between a smoothed output and the
  unsmoothed one, measured where the motion-compensated previous input does
  *not* predict the current input (occlusions, uncovered background, new
  content, motion the estimate missed): there a smoother can only drag in
  history that does not belong (trails); zero is ideal.
- **PSNR / SSIM** against a reference, when one is given.

All functions take ``H x W x 3`` arrays (uint8, uint16 or float on the 8-bit
scale) and work frame pair by frame pair, so long videos stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsr.frame import to_levels


def max_filter(values: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a ``(2r+1)^2`` neighbourhood (dilation), edges clamped."""
    if radius <= 0:
        return values
    out = values.copy()
    padded = np.pad(values, radius, mode="edge")
    h, w = values.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            np.maximum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


def change_map(prev: np.ndarray, cur: np.ndarray, radius: int = 1) -> np.ndarray:
    """Per-pixel change between two frames (max over channels, 8-bit levels), dilated by ``radius``."""
    return max_filter(np.abs(to_levels(cur) - to_levels(prev)).max(axis=2), radius)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map (to bring a low-resolution mask to the output size)."""
    ys = np.arange(height) * mask.shape[0] // height
    xs = np.arange(width) * mask.shape[1] // width
    return mask[ys][:, xs]


def hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV on OpenCV's scale (H 0..180, S and V 0..255), as PySceneDetect measures content."""
    x = to_levels(rgb)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=2)
    c = v - x.min(axis=2)
    s = np.where(v > 0, 255.0 * c / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(c > 0, (h * 30.0) % 180.0, 0.0)
    return np.stack([h, s, v], axis=2)


def content_change(prev_hsv: np.ndarray, cur_hsv: np.ndarray) -> float:
    """Mean difference of two frames' :func:`hsv`, the score of PySceneDetect's ContentDetector (cut above ~27)."""
    return float(np.abs(cur_hsv - prev_hsv).mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB on the 8-bit scale, optionally over a 2-D mask."""
    diff = (to_levels(a) - to_levels(b)) ** 2
    mse = float(diff[mask].mean()) if mask is not None else float(diff.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _box(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size x size`` windows (valid region), via an integral image."""
    c = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / (size * size)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
    """Mean SSIM of the luma (BT.601 weights), uniform 7x7 window, constants of Wang et al. 2004."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float64)
    x = to_levels(a).astype(np.float64) @ weights
    y = to_levels(b).astype(np.float64) @ weights
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box(x, window), _box(y, window)
    vx = _box(x * x, window) - mx * mx
    vy = _box(y * y, window) - my * my
    cov = _box(x * y, window) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class StabilityReport:
    """Accumulates metrics over a stream of frame pairs."""

    static_threshold: float = 2.0
    occlusion_threshold: float = 8.0
    radius: int = 1
    flicker_sum: float = 0.0
    flicker_count: int = 0
    mc_sum: float = 0.0
    mc_count: int = 0
    ghost_sum: float = 0.0
    ghost_count: int = 0
    psnr_values: list[float] = field(default_factory=list)
    ssim_values: list[float] = field(default_factory=list)
    frames: int = 0
    _prev_in: np.ndarray | None = None
    _prev_out: np.ndarray | None = None
    _flow: Any = None

    def add(
        self,
        original: np.ndarray,
        upscaled: np.ndarray,
        unsmoothed: np.ndarray | None = None,
        reference: np.ndarray | None = None,
    ) -> None:
        """Add one frame: the input, our output, optionally the unsmoothed output and a reference."""
        out = to_levels(upscaled)
        prev_in, prev_out = self._prev_in, self._prev_out
        if prev_in is not None and prev_out is not None and prev_in.shape == original.shape:
            change = resize_nearest(change_map(prev_in, original, self.radius), *out.shape[:2])
            static = change <= self.static_threshold
            if static.any():
                self.flicker_sum += float(np.abs(out - prev_out).max(axis=2)[static].sum())
                self.flicker_count += int(static.sum())
            predicted, error = self._compensated(prev_in, original, prev_out, out)
            if predicted.any():
                self.mc_sum += float(error[predicted].sum())
                self.mc_count += int(predicted.sum())
            if unsmoothed is not None and (~predicted).any():
                self.ghost_sum += float(np.abs(out - to_levels(unsmoothed)).max(axis=2)[~predicted].sum())
                self.ghost_count += int((~predicted).sum())
        if reference is not None:
            self.psnr_values.append(psnr(upscaled, reference))
            self.ssim_values.append(ssim(upscaled, reference))
        self._prev_in, self._prev_out = original, out
        self.frames += 1

    def _compensated(
        self, prev_in: np.ndarray, cur_in: np.ndarray, prev_out: np.ndarray, cur_out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where the motion-compensated previous input predicts the current one (at output size), and the
        output's frame-to-frame error after the same compensation (max over RGB)."""
        from vsr.motion import FlowEstimator, compensate, remap, scale_flow

        if self._flow is None:
            self._flow = FlowEstimator("fast")
        flow, error_in, inside = compensate(prev_in, cur_in, self._flow(prev_in, cur_in))
        good = resize_nearest(((error_in <= self.occlusion_threshold) & inside).astype(np.uint8), *cur_out.shape[:2])
        warped, inside_out = remap(prev_out, scale_flow(flow, *cur_out.shape[:2]))
        return (good > 0) & inside_out, np.abs(cur_out - warped).max(axis=2)

    @property
    def flicker(self) -> float:
        return self.flicker_sum / self.flicker_count if self.flicker_count else float("nan")

    @property
    def mc_flicker(self) -> float:
        return self.mc_sum / self.mc_count if self.mc_count else float("nan")

    @property
    def ghosting(self) -> float:
        return self.ghost_sum / self.ghost_count if self.ghost_count else float("nan")

    def summary(self) -> dict[str, float | int | None]:
        def mean(values: list[float]) -> float | None:
            finite = [v for v in values if np.isfinite(v)]
            return float(np.mean(finite)) if finite else (float("inf") if values else None)

        return {
            "frames": self.frames,
            "flicker": self.flicker if self.flicker_count else None,
            "mc_flicker": self.mc_flicker if self.mc_count else None,
            "ghosting": self.ghosting if self.ghost_count else None,
            "psnr": mean(self.psnr_values),
            "ssim": mean(self.ssim_values),
        }
