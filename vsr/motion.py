"""Motion between consecutive low-resolution frames, and warping by it.

vsr estimates motion on the *input* frames (small, cheap) with OpenCV's DIS
optical flow (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse
Search"), a dense field at input resolution: pans, zooms and independently
moving objects alike. Measured on 2 cores (bench/README.md), DIS "fast" takes
about 1 ms at 160x120 and 40 ms at 1920x1080, where Farneback's dense flow
takes 4.5 ms and 570 ms.

Convention: :class:`FlowEstimator` returns the *backward* flow ``f`` of the
current frame: the pixel at ``p`` in the current frame came from ``p + f(p)``
in the previous one, so ``warp(previous, f)`` predicts the current frame.
``f[..., 0]`` is x (columns), ``f[..., 1]`` is y (rows), in pixels.

Two warps: :func:`remap` (OpenCV, bilinear, at input resolution for the
smoother's gate and at any size for ``vsr metrics``) and the compiled Keras
one in :mod:`stages.smooth`, which moves output frames on the upscaler's
device.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from vsr.frame import to_levels

FlowPreset = Literal["ultrafast", "fast", "medium", "none"]

#: OpenCV's name of each DIS preset
_PRESETS = {
    "ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST",
    "fast": "DISOPTICAL_FLOW_PRESET_FAST",
    "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM",
}


def gray(rgb: np.ndarray) -> np.ndarray:
    """8-bit luma (BT.601 weights) of RGB pixels of any depth, as DIS wants it."""
    levels = to_levels(rgb) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.round(levels), 0, 255).astype(np.uint8)


class FlowEstimator:
    """Dense backward flow between consecutive frames (see the module's convention).

    ``preset`` is DIS's speed/quality preset; ``"none"`` returns zero motion
    (no motion compensation: only still areas can then be smoothed).
    """

    def __init__(self, preset: FlowPreset = "fast") -> None:
        self.preset = preset
        self._dis: Any = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # the last current frame and its luma
        if preset != "none":
            import cv2

            self._dis = cv2.DISOpticalFlow_create(getattr(cv2, _PRESETS[preset]))

    def __call__(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The ``H x W x 2`` float32 flow of ``current`` back into ``previous`` (both RGB, same size)."""
        height, width = current.shape[:2]
        if self._dis is None or min(height, width) < 8:  # DIS needs a few pixels of image pyramid
            return np.zeros((height, width, 2), dtype=np.float32)
        # in a stream, this call's previous frame is the last call's current one: its luma is kept
        before = self._last[1] if self._last is not None and self._last[0] is previous else gray(previous)
        now = gray(current)
        self._last = (current, now)
        return self._dis.calc(now, before, None)


def scale_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """The flow of a ``height`` x ``width`` enlargement, vectors scaled: each input pixel's block moves as one.

    Nearest, not bilinear: at a moving object's edge a bilinear flow would drag its motion into the
    background beside it, which no check at the input's resolution has seen.
    """
    import cv2

    sy, sx = height / flow.shape[0], width / flow.shape[1]
    return cv2.resize(flow, (width, height), interpolation=cv2.INTER_NEAREST) * np.array([sx, sy], dtype=np.float32)


def remap(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (levels, float32) sampled at ``p + flow(p)``, bilinear; and where that point lies inside it."""
    import cv2

    height, width = flow.shape[:2]
    xs = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    warped = cv2.remap(to_levels(image), xs, ys, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    return warped, inside


#: How much worse (8-bit levels) standing still may predict a pixel than the flow and still be preferred.
STILL_MARGIN = 1.0


def prediction_error(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per pixel: the mean absolute RGB error, then the larger of its 3x3 average (robust to sensor noise)
    and half of it (so a one-pixel edge the motion missed still counts)."""
    import cv2

    error = np.abs(to_levels(predicted) - to_levels(actual)).mean(axis=2)
    return np.maximum(cv2.blur(error, (3, 3), borderType=cv2.BORDER_REPLICATE), 0.5 * error)


def compensate(previous: np.ndarray, current: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, ...]:
    """The motion vsr trusts between two input frames: ``(flow, error, inside)``.

    Where standing still predicts the current frame about as well as the
    flow (within :data:`STILL_MARGIN`: flat areas, where optical flow is a
    guess), the motion is zero; a wrong flow there would slide the texture
    ESRGAN invented, which the input cannot show. ``error`` is the
    :func:`prediction_error` of the chosen motion, ``inside`` whether it
    stays within the previous frame. The temporal smoother (:func:`gate`)
    and ``vsr metrics`` both judge motion with it.
    """
    predicted, inside = remap(previous, flow)
    moving, still = prediction_error(predicted, current), prediction_error(previous, current)
    keep = still <= moving + STILL_MARGIN
    return np.where(keep[..., None], 0.0, flow).astype(np.float32), np.where(keep, still, moving), inside | keep


def gate(
    previous: np.ndarray, current: np.ndarray, flow: np.ndarray, strength: float, threshold: float, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """The temporal smoother's trusted motion and history weight per input pixel: ``(flow, weight)``.

    The :func:`compensate` error, dilated by ``radius`` (so a moving edge
    counts on both sides), gives the history weight ``strength`` under half
    of ``threshold``, none at or above it and linear in between; nothing
    where the motion leaves the previous frame.
    """
    import cv2

    flow, error, inside = compensate(previous, current, flow)
    if radius > 0:
        side = 2 * radius + 1
        error = cv2.dilate(error, np.ones((side, side), np.uint8), borderType=cv2.BORDER_REPLICATE)
    weight = np.clip((threshold - error) / (threshold / 2), 0.0, 1.0) * (strength * inside)
    return flow, weight.astype(np.float32)
