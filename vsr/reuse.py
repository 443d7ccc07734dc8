"""Region reuse: the network runs only where the picture changed since the output it would reuse was made.

A held camera, a title card or animation drawn on twos holds most of each
frame still. For each frame, in blocks of :data:`BLOCK` input pixels, the
input is compared with the *reference*: the input each part of the carried
output was computed from (not merely the previous frame, so slow drift is
caught once it adds up). The difference is averaged over 2x2 pixels, so
single-pixel noise halves; a block changed when ten of its 64 2x2 cells pass
the threshold (what moved leaves edges and patches; an encoder's
requantisation of a held frame leaves scattered peaks), or one passes four
times it (a dot, a thin line). The threshold is three times the clip's
noise, kept from 2 to 8 levels. The noise is the median block's peak (a
clean clip's still blocks are exactly still, so what moves in it is never
taken for noise), tracked from frame to frame: it falls at once to a calmer
frame's and rises slowly, so frames with motion barely move it (compression
noise differs from clip to clip: one fixed threshold would be wrong for
some). A frame whose kept blocks drift one way on average (a fade) runs
whole, or the fade would come out in steps.

Every output pixel depends on the input within the network's context
(``pad``, the tiler's, which bounds its receptive field), so the blocks to
recompute are the changed ones grown by that context. They are recomputed in
crops (connected regions, grown by ``pad`` more for context, their sides
rounded up on a short ladder so few window shapes are compiled), and pasted
into the previous output. A reused pixel therefore has no changed input within
its context, and a recomputed one sees its whole context: no seams. A frame
where nothing changed skips the network; a frame where the crops would cost
about as much as the whole frame (a pan, a cut) runs whole, as with reuse
off, so a clip where nothing can be reused pays only for the comparison.

The reference, the carried output and the noise estimate travel with the
frames (:meth:`vsr.frame.Frame.carrying`), so segments and resumed runs go on
exactly as one pass would; a unit of a scale-out run starts without them and
computes its first frame whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Side of the blocks compared, in input pixels.
BLOCK = 16
#: A block changed when its smoothed difference peaks above this many times the clip's noise...
NOISE_FACTOR = 3.0
#: ...kept within these bounds, in 8-bit levels.
THRESHOLD_RANGE = (2.0, 8.0)
#: A block changed when this many of its 2x2 cells pass the threshold (an encoder's requantisation leaves lone
#: peaks in a held frame; what moved leaves edges and patches)...
MIN_CELLS = 10
#: ...or one cell passes this many times the threshold.
SPIKE_FACTOR = 4.0
#: A frame whose blocks to be kept differ on average by more than this many levels, all one way, is fading (or
#: its exposure changing): it runs whole, or the fade would come out in steps of the threshold.
DRIFT = 0.5
#: Crops whose cost (pixels through the network) passes this share of the whole frame's run the whole frame.
WHOLE_FRAME_SHARE = 0.75


def _ladder(size: int, limit: int) -> int:
    """``size`` rounded up to 32, 64, 128 or 256 px steps (few window shapes to compile), at most ``limit``."""
    step = 32 if size <= 128 else 64 if size <= 256 else 128 if size <= 1024 else 256
    return min(limit, -(-size // step) * step)


@dataclass(frozen=True)
class Crop:
    """A region to recompute: ``core`` (y0, y1, x0, x1) is pasted; ``window`` is what the network sees."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


@dataclass
class ReuseStats:
    """What reuse saved over a run: frames whole, partly reused or skipped, and input pixels recomputed."""

    frames: int = 0
    skipped: int = 0
    partial: int = 0
    pixels: int = 0
    recomputed: int = 0

    def summary(self) -> str:
        reused = 1 - self.recomputed / self.pixels if self.pixels else 0.0
        return (
            f"reuse: {self.skipped} of {self.frames} frames skipped the network, {self.partial} were partly "
            f"recomputed; {reused:.0%} of the picture was reused"
        )


@dataclass
class _Plan:
    kind: str  # "whole", "crops" or "same"
    reference: np.ndarray  # the reference input after this frame
    noise: float | None
    inputs: list[np.ndarray] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)


class RegionReuse:
    """Reuse for one stream of frames of one size.

    Args:
        scale: the network's scale factor.
        pad: the context each output pixel depends on, in input pixels (the tiler's ``pad``).
        threshold: a fixed threshold in 8-bit levels, or None to estimate it from the clip's noise.
        state: what :meth:`state` returned after the previous frame (from a previous segment), or empty.
    """

    def __init__(self, scale: int, pad: int, threshold: float | None, state: Mapping[str, np.ndarray]) -> None:
        self.scale, self.pad, self.threshold = scale, pad, threshold
        self.reference: np.ndarray | None = state.get("input")
        self.output: np.ndarray | None = state.get("output")
        noise = state.get("noise")
        self.noise: float | None = float(noise[0]) if noise is not None and noise.size else None
        self.stats = ReuseStats()

    def upscale(self, frames: Sequence[np.ndarray], upscaler: Any) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The upscaled ``frames`` (consecutive), running ``upscaler`` (a :class:`vsr.inference.TiledUpscaler`)
        only on what changed, each with the state a next frame needs (the reference input, the output made
        from it, the noise estimate). Whole frames and crops of all ``frames`` go to the network in one call."""
        plans = [self._plan(pixels, upscaler) for pixels in frames]
        wholes = [plan.inputs[0] for plan in plans if plan.kind == "whole"]
        whole_outputs = iter(upscaler.upscale(wholes) if wholes else [])
        windows = [window for plan in plans if plan.kind == "crops" for window in plan.inputs]
        window_outputs = iter(run_windows(upscaler, windows))
        outputs = []
        for plan in plans:
            results = [next(whole_outputs if plan.kind == "whole" else window_outputs) for _ in plan.inputs]
            output = self._apply(plan, results)
            noise = np.array([-1.0 if plan.noise is None else plan.noise], dtype=np.float64)
            outputs.append((output, {"input": plan.reference, "output": output, "noise": noise}))
        return outputs

    def _plan(self, pixels: np.ndarray, upscaler: Any) -> _Plan:
        """What to run for ``pixels``; moves the reference on as if it had run."""
        height, width = pixels.shape[:2]
        self.stats.frames += 1
        self.stats.pixels += height * width
        reference = self.reference
        if reference is None or reference.shape != pixels.shape or reference.dtype != pixels.dtype:
            return self._whole(pixels)
        cells, drift = block_differences(reference, pixels)
        # the noise: the median block's peak. A clean clip's still blocks are exactly still (0), so what moves
        # in it is never taken for noise; the estimate falls at once to a calmer frame's and rises slowly (5 %
        # a frame) to a busier one's
        calm = float(np.median(cells.max(axis=2)))
        self.noise = calm if self.noise is None or self.noise < 0 else min(self.noise * 1.05 + 0.05, calm)
        low, high = THRESHOLD_RANGE
        threshold = self.threshold if self.threshold is not None else min(high, max(low, NOISE_FACTOR * self.noise))
        changed = changed_blocks(cells, threshold)
        grow = math.ceil(self.pad / BLOCK)  # blocks whose outputs see a changed block
        need = _dilate(changed, grow)
        kept = ~need
        if kept.any() and abs(float(drift[kept].mean())) > DRIFT:  # a fade: what would be kept is drifting
            return self._whole(pixels)
        if not changed.any():
            self.stats.skipped += 1
            return _Plan("same", reference, self.noise)
        budget = WHOLE_FRAME_SHARE * whole_cost(upscaler, height, width)
        if int(need.sum()) * BLOCK * BLOCK >= budget:  # the crops could only cost more (a pan, a cut)
            return self._whole(pixels)
        crops = self._crops(need, height, width, upscaler)
        if sum((c.window[1] - c.window[0]) * (c.window[3] - c.window[2]) for c in crops) >= budget:
            return self._whole(pixels)
        reference = reference.copy()
        for crop in crops:
            y0, y1, x0, x1 = crop.core
            reference[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
            self.stats.recomputed += (y1 - y0) * (x1 - x0)
        self.reference = reference
        self.stats.partial += 1
        inputs = [np.ascontiguousarray(pixels[c.window[0] : c.window[1], c.window[2] : c.window[3]]) for c in crops]
        return _Plan("crops", reference, self.noise, inputs, crops)

    def _whole(self, pixels: np.ndarray) -> _Plan:
        self.reference = pixels
        self.stats.recomputed += pixels.shape[0] * pixels.shape[1]
        return _Plan("whole", pixels, self.noise, [pixels])

    def _apply(self, plan: _Plan, results: list[np.ndarray]) -> np.ndarray:
        if plan.kind == "whole":
            self.output = results[0]
        elif plan.kind == "crops":
            assert self.output is not None
            output = self.output.copy()
            s = self.scale
            for crop, result in zip(plan.crops, results, strict=True):
                y0, y1, x0, x1 = crop.core
                wy, wx = crop.window[0], crop.window[2]
                inside = result[(y0 - wy) * s : (y1 - wy) * s, (x0 - wx) * s : (x1 - wx) * s]
                output[y0 * s : y1 * s, x0 * s : x1 * s] = inside
            self.output = output
        assert self.output is not None
        return self.output

    def _crops(self, need: np.ndarray, height: int, width: int, upscaler: Any) -> list[Crop]:
        """Crops covering the blocks in ``need``: connected regions, merged where their windows would overlap, cut
        where a window would hold more pixels than the tiler's (memory) do."""
        boxes = [
            (by0 * BLOCK, min(height, by1 * BLOCK), bx0 * BLOCK, min(width, bx1 * BLOCK))
            for by0, by1, bx0, bx1 in _regions(need)
        ]
        while True:
            crops = [Crop(box, self._window(box, height, width)) for box in boxes]
            merged = _merge_overlapping(boxes, [c.window for c in crops])
            if len(merged) == len(boxes):
                break
            boxes = merged
        if upscaler.tile <= 0:  # whole frames fit: so does any crop
            return crops
        most = (upscaler.tile + 2 * upscaler.pad) ** 2
        return [piece for crop in crops for piece in self._cut(crop, most, height, width)]

    def _cut(self, crop: Crop, most: int, height: int, width: int) -> list[Crop]:
        """``crop`` as it is, or its core cut in equal parts across its longer side until each window fits."""
        y0, y1, x0, x1 = crop.core
        area = (crop.window[1] - crop.window[0]) * (crop.window[3] - crop.window[2])
        if area <= most:
            return [crop]
        across = x1 - x0 >= y1 - y0
        start, end = (x0, x1) if across else (y0, y1)
        parts = 2
        while True:
            edges = [start + (end - start) * i // parts // BLOCK * BLOCK for i in range(parts)] + [end]
            cores = [(y0, y1, a, b) if across else (a, b, x0, x1) for a, b in itertools.pairwise(edges) if b > a]
            pieces = [Crop(core, self._window(core, height, width)) for core in cores]
            if parts >= (end - start) // BLOCK or all(
                (p.window[1] - p.window[0]) * (p.window[3] - p.window[2]) <= most for p in pieces
            ):
                return pieces
            parts += 1

    def _window(self, core: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
        """``core`` grown by ``pad`` for context, its sides on the ladder, moved inwards at the frame's edges."""
        y0, y1, x0, x1 = core

        def axis(a: int, b: int, length: int) -> tuple[int, int]:
            size = _ladder(b - a + 2 * self.pad, length)
            start = min(max(a - self.pad - (size - (b - a + 2 * self.pad)) // 2, 0), length - size)
            return start, start + size

        wy, wx = axis(y0, y1, height), axis(x0, x1, width)
        return wy[0], wy[1], wx[0], wx[1]


def run_windows(upscaler: Any, windows: list[np.ndarray]) -> list[np.ndarray]:
    """Each window through the network as it is (it holds its own context: no tiling), same shapes batched.

    A window whose sides a pixel-unshuffling network cannot take (a frame's odd side) goes through the tiler.
    """
    results: list[np.ndarray | None] = [None] * len(windows)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, window in enumerate(windows):
        if window.shape[0] % upscaler.multiple or window.shape[1] % upscaler.multiple:
            results[i] = upscaler.upscale([window])[0]
        else:
            by_shape.setdefault(window.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), upscaler.batch):
            chunk = indices[start : start + upscaler.batch]
            for i, out in zip(chunk, upscaler.run_windows([windows[i] for i in chunk]), strict=True):
                results[i] = out
    return results  # type: ignore[return-value]


def whole_cost(upscaler: Any, height: int, width: int) -> int:
    """Pixels through the network when the whole frame runs (its windows overlap by their context)."""
    from vsr.inference import plan_windows

    windows = plan_windows(height, width, upscaler.tile, upscaler.pad, upscaler.multiple)
    return sum((w.win_y[1] - w.win_y[0]) * (w.win_x[1] - w.win_x[0]) for w in windows)


def block_differences(reference: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The difference averaged over the channels and over 2x2 pixels (single-pixel noise halves, an edge that
    moved does not), in 8-bit levels, as (block rows, block cols, cells): the 2x2 cells of each block; and
    each block's mean signed difference (``pixels`` minus ``reference``: a fade's, which noise has not).

    OpenCV's SIMD kernels: about 0.2 ms at 480x270, a few % of what checking in numpy cost.
    """
    import cv2

    scale = (255.0 / 65535.0 if pixels.dtype == np.uint16 else 1.0) / 3.0
    signed = cv2.transform(
        cv2.subtract(pixels.astype(np.float32), reference.astype(np.float32)), np.full((1, 3), scale, np.float32)
    )
    height, width = signed.shape
    rows, cols = -(-height // BLOCK), -(-width // BLOCK)
    if (rows * BLOCK, cols * BLOCK) != (height, width):
        signed = cv2.copyMakeBorder(signed, 0, rows * BLOCK - height, 0, cols * BLOCK - width, cv2.BORDER_CONSTANT, 0)
    diff = cv2.transform(cv2.absdiff(reference, pixels).astype(np.float32), np.full((1, 3), scale, np.float32))
    if diff.shape != signed.shape:
        diff = cv2.copyMakeBorder(diff, 0, rows * BLOCK - height, 0, cols * BLOCK - width, cv2.BORDER_CONSTANT, 0)
    cells = cv2.resize(diff, (cols * BLOCK // 2, rows * BLOCK // 2), interpolation=cv2.INTER_AREA)  # 2x2 means
    drift = cv2.resize(signed, (cols, rows), interpolation=cv2.INTER_AREA)  # block means
    half = BLOCK // 2
    return cells.reshape(rows, half, cols, half).transpose(0, 2, 1, 3).reshape(rows, cols, half * half), drift


def changed_blocks(cells: np.ndarray, threshold: float) -> np.ndarray:
    """Blocks that changed: :data:`MIN_CELLS` cells or more above ``threshold`` (a change is structure: an edge,
    a patch), or one cell above :data:`SPIKE_FACTOR` times it (a small bright thing)."""
    above = (cells > threshold).sum(axis=2)
    return (above >= MIN_CELLS) | (cells.max(axis=2) > SPIKE_FACTOR * threshold)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` blocks in every direction (diagonals included)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def _regions(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (y0, y1, x0, x1, in blocks) of the 8-connected regions of ``mask``."""
    seen = np.zeros_like(mask)
    boxes = []
    rows, cols = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        stack, box = [(int(y), int(x))], [int(y), int(y) + 1, int(x), int(x) + 1]
        while stack:
            cy, cx = stack.pop()
            box = [min(box[0], cy), max(box[1], cy + 1), min(box[2], cx), max(box[3], cx + 1)]
            for ny in range(max(0, cy - 1), min(rows, cy + 2)):
                for nx in range(max(0, cx - 1), min(cols, cx + 2)):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        boxes.append((box[0], box[1], box[2], box[3]))
    return boxes


def _merge_overlapping(
    boxes: list[tuple[int, int, int, int]], windows: list[tuple[int, int, int, int]]
) -> list[tuple[int, int, int, int]]:
    """``boxes`` with any two whose windows overlap replaced by their union (one pass)."""

    def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if overlap(windows[i], windows[j]):
                a, b = boxes[i], boxes[j]
                union = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                return [box for k, box in enumerate(boxes) if k not in (i, j)] + [union]
    return boxes
