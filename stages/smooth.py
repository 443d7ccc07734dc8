"""The ``temporal`` smoother: less ESRGAN flicker in still areas, no ghosting on motion.

Per-frame ESRGAN invents texture independently in every frame, so still areas
shimmer. This stage blends each output frame with the previous *smoothed*
output, but only where the scene did not change, decided on the cheap
low-resolution input frames:

- change map: the per-pixel difference between this and the previous input
  frame (max over RGB), dilated by ``radius`` so that object edges count as
  moving;
- soft mask: full blending (weight ``strength``) where the change is under
  half of ``motion_threshold``, none at or above it, linear in between; the
  mask is brought to the output size by nearest-neighbour;
- scene cuts: when the input's HSV content changes by more than
  ``cut_threshold`` (PySceneDetect's ContentDetector measure), the history is
  dropped, so nothing is ever blended across a cut.

Moving pixels take the current frame as it is, so moving objects leave no
trails. Global motion (pans) is not compensated: a pan makes the whole frame
"moving", so smoothing switches itself off for it rather than smear; the
shimmer it leaves there is masked by the motion itself.

History: the previous input frame and the previous *emitted* output frame.
Both travel with each output frame (:meth:`vsr.frame.Frame.carrying`), so a
resumable run saves them with every finished segment and the next segment,
even in another process, goes on exactly as an uninterrupted pass would: no
restart, no flicker jump at segment boundaries. Timestamps and frame count
are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vsr.frame import Frame
from vsr.hookspecs import hookimpl
from vsr.metrics import change_map, content_change, from_levels, hsv, resize_nearest, to_levels
from vsr.registry import StageRegister
from vsr.stage import Stage


@dataclass
class SmoothOptions:
    strength: float = 0.6
    """Weight of the history in still areas (0: off, 0.9: very strong)."""
    motion_threshold: float = 6.0
    """Input change (8-bit levels) at and above which a pixel counts as moving."""
    cut_threshold: float = 27.0
    """Mean HSV change above which a frame starts a new scene (history reset)."""
    radius: int = 1
    """Dilation of the change map, in input pixels."""

    def validate(self) -> str | None:
        if not 0.0 <= self.strength < 1.0:
            return "strength must be in [0, 1)"
        if self.motion_threshold <= 0 or self.cut_threshold <= 0 or self.radius < 0:
            return "thresholds must be > 0 and radius >= 0"
        return None


class TemporalSmoother(Stage):
    """Motion-aware, cut-aware blending of consecutive upscaled frames."""

    name = "temporal"
    description = "motion- and cut-aware temporal smoothing: less flicker in still areas, no trails"
    Options = SmoothOptions

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        opts = self.options
        prev_in = self.job.state.get("input")  # carried out of the previous segment, if any
        prev_hsv = hsv(prev_in) if prev_in is not None else None
        prev_out = self.job.state.get("output")
        prev_levels = to_levels(prev_out) if prev_out is not None else None
        for frame in frames:
            small = frame.source if frame.source is not None else frame.pixels
            small_hsv = hsv(small)  # computed once per frame, kept for the next one
            current = to_levels(frame.pixels)
            fresh = (
                prev_in is None
                or prev_hsv is None
                or prev_levels is None
                or prev_in.shape != small.shape
                or prev_levels.shape != current.shape
                or content_change(prev_hsv, small_hsv) > opts.cut_threshold
            )
            if fresh or opts.strength == 0:
                pixels = frame.pixels
            else:
                change = change_map(prev_in, small, opts.radius)
                half = opts.motion_threshold / 2
                weight = np.clip((opts.motion_threshold - change) / half, 0.0, 1.0) * opts.strength
                weight = resize_nearest(weight.astype(np.float32), *current.shape[:2])[..., None]
                pixels = from_levels(current + weight * (prev_levels - current), frame.pixels.dtype)
                current = to_levels(pixels)
            prev_in, prev_hsv, prev_levels = small, small_hsv, current
            yield frame.with_pixels(pixels).carrying(self.job.role, {"input": small, "output": pixels})


@hookimpl
def register_smoothers(register: StageRegister) -> None:
    register(TemporalSmoother)
