"""Compiled, tiled, batched inference of an upscaling network.

Tiling: each frame is split into a grid of near-equal core tiles of at most
``tile`` pixels. Each core is run inside a window of ``tile + 2 * pad``
pixels; at the frame's edges the window slides inwards instead of shrinking,
so every window of a frame has the same shape (one compiled graph per frame
size, no retracing) and every core keeps at least ``pad`` pixels of real
context on each side that has any. Only the core of each output window is
kept. ``pad`` must cover the network's effective receptive field; the
defaults per architecture are :data:`AUTO_PAD`.

Batching: windows of the same shape, from one frame or from several
consecutive frames, run as one batch of up to ``batch``.

An engine (:mod:`vsr.engine`) runs the windows: its graph takes the frame's
integer pixels, normalises them, runs the network and rounds back to
integers, all compiled, so no per-pixel work is left to numpy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    """One tile: the core it produces and the window the network sees."""

    core_y: tuple[int, int]
    core_x: tuple[int, int]
    win_y: tuple[int, int]
    win_x: tuple[int, int]


def _split(length: int, tile: int) -> list[tuple[int, int]]:
    parts = max(1, math.ceil(length / tile))
    edges = [round(i * length / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def _window(core: tuple[int, int], length: int, size: int) -> tuple[int, int]:
    if size >= length:
        return 0, length
    start = min(max(core[0] - (size - (core[1] - core[0])) // 2, 0), length - size)
    return start, start + size


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_windows(height: int, width: int, tile: int, pad: int, multiple: int = 1) -> list[Window]:
    """The tiles of a ``height`` x ``width`` frame; ``tile=0`` means one tile.

    An axis is split into near-equal cores of at most ``tile``; its windows
    are the longest core plus ``pad`` on each side, not ``tile + 2 * pad``,
    so no work is spent on context that a smaller core does not need. All
    windows of a frame have one shape. Window sides are multiples of
    ``multiple`` when the frame's sides are.
    """
    if tile <= 0:
        return [Window((0, height), (0, width), (0, height), (0, width))]
    limit = _ceil_to(tile + 2 * pad, multiple)

    def axis(length: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        # an axis that one window covers anyway is not split: splitting would only repeat work
        if length <= limit:
            return [((0, length), (0, length))]
        cores = _split(length, tile)
        size = _ceil_to(max(b - a for a, b in cores) + 2 * pad, multiple)
        return [(core, _window(core, length, size)) for core in cores]

    return [Window(cy, cx, wy, wx) for cy, wy in axis(height) for cx, wx in axis(width)]


class TiledUpscaler:
    """Runs a network over frames of any size in bounded memory.

    Args:
        engine: the :class:`vsr.engine.Engine` that runs the network, or a
            Keras model mapping ``(N, H, W, 3)`` RGB in 0..1 to
            ``(N, s*H, s*W, 3)``, run by the Keras engine.
        scale: the network's scale factor ``s``.
        tile: core tile size in input pixels (0: whole frames).
        pad: context pixels around each core.
        batch: windows per network call.
        out_dtype: ``uint8`` or ``uint16`` output pixels (``float32`` for
            float frames); for a Keras model only, an engine has its own.
        precision: the Keras model's compute precision, for reports; likewise.
    """

    def __init__(
        self, engine: Any, scale: int, tile: int, pad: int, batch: int, out_dtype: str = "uint8", precision: str = ""
    ) -> None:
        from vsr.engine import Engine, KerasEngine

        if not isinstance(engine, Engine):
            engine = KerasEngine(engine, out_dtype, precision or "float32")
        self.engine = engine
        self.network = engine.network
        self.scale = scale
        self.tile = tile
        self.pad = pad
        self.batch = max(1, batch)
        #: networks that pixel-unshuffle their input need sides that are multiples of this
        self.multiple = int(self.network.input_multiple)

    @property
    def precision(self) -> str:
        """What the engine computes in."""
        return str(self.engine.precision)

    @property
    def out_dtype(self) -> str:
        return str(self.engine.out_dtype)

    def run_windows(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Upscale same-shaped images (a batch of windows) in one engine call."""
        return list(self.engine.run(np.stack(images)))

    def _pad(self, frame: np.ndarray) -> np.ndarray:
        """Reflect-pad to multiples of :attr:`multiple` (as Real-ESRGAN does for x2/x1 models)."""
        m = self.multiple
        extra_y, extra_x = -frame.shape[0] % m, -frame.shape[1] % m
        if not (extra_y or extra_x):
            return frame
        mode = "reflect" if min(frame.shape[:2]) > m else "edge"
        return np.pad(frame, ((0, extra_y), (0, extra_x), (0, 0)), mode=mode)

    def upscale(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Upscale a group of frames, batching their windows by shape."""
        sizes = [f.shape[:2] for f in frames]
        frames = [self._pad(f) for f in frames]
        outputs = [
            np.empty((f.shape[0] * self.scale, f.shape[1] * self.scale, 3), dtype=self.out_dtype) for f in frames
        ]
        jobs: dict[tuple[int, int, str], list[tuple[int, Window]]] = {}
        for i, frame in enumerate(frames):
            for w in plan_windows(frame.shape[0], frame.shape[1], self.tile, self.pad, self.multiple):
                shape = (w.win_y[1] - w.win_y[0], w.win_x[1] - w.win_x[0], str(frame.dtype))
                jobs.setdefault(shape, []).append((i, w))
        s = self.scale
        for items in jobs.values():
            for start in range(0, len(items), self.batch):
                chunk = items[start : start + self.batch]
                windows = [frames[i][w.win_y[0] : w.win_y[1], w.win_x[0] : w.win_x[1]] for i, w in chunk]
                for (i, w), result in zip(chunk, self.run_windows(windows), strict=True):
                    oy, ox = (w.core_y[0] - w.win_y[0]) * s, (w.core_x[0] - w.win_x[0]) * s
                    h, wd = (w.core_y[1] - w.core_y[0]) * s, (w.core_x[1] - w.core_x[0]) * s
                    outputs[i][w.core_y[0] * s : w.core_y[1] * s, w.core_x[0] * s : w.core_x[1] * s] = result[
                        oy : oy + h, ox : ox + wd
                    ]
        return [
            out if out.shape[:2] == (h * s, w * s) else np.ascontiguousarray(out[: h * s, : w * s])
            for out, (h, w) in zip(outputs, sizes, strict=True)
        ]

    def frames_per_call(self, height: int, width: int) -> int:
        """How many frames to group so that one call fills a batch."""
        return max(1, self.batch // len(plan_windows(height, width, self.tile, self.pad, self.multiple)))


def group(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: Peak activation bytes per window input pixel for networks vsr does not know (the RRDBNet x4
#: figure). The known ones are estimated from peak RSS measured on the TensorFlow CPU backend
#: (bench/README.md): RRDBNet keeps about 2.5 float32 maps of ``num_feat`` channels alive at the
#: output resolution (its x4 tail), SRVGGNetCompact about 5 at the input resolution.
DEFAULT_BYTES_PER_PIXEL = 11 * 1024


def activation_bytes_per_pixel(network: Any) -> int:
    """Estimated peak activation memory per input pixel of one window."""
    from vsr.models.rrdbnet import RRDBNet
    from vsr.models.srvgg import SRVGGNetCompact

    if isinstance(network, RRDBNet):
        return int(2.75 * network.num_feat * 4 * network.scale**2)
    if isinstance(network, SRVGGNetCompact):
        return 5 * network.num_feat * 4 + 2 * 3 * 4 * network.scale**2
    return DEFAULT_BYTES_PER_PIXEL


def auto_tile(bytes_per_pixel: int, pad: int, batch: int, budget: int, multiple: int = 1) -> int:
    """The largest core tile whose batch of windows fits ``budget`` bytes of activations.

    Larger windows waste less work on overlapping context, so the tile is as
    large as memory allows; it is never below 64 px (context would then
    dominate) and is a multiple of 8 (and of ``multiple``).
    """
    window = math.isqrt(max(budget, 0) // max(1, bytes_per_pixel * batch))
    step = 8 * multiple // math.gcd(8, multiple)
    return max(64, (window - 2 * pad) // step * step)


#: ``tile_pad = "auto"`` per architecture, the one place these defaults are written: the least context
#: whose seams (tiled against untiled, 64-px tiles, on six real photographs, docs/presets.md, Tiling) stay
#: within 2 levels at most and 0.05 on average. RRDBNet needs 48 px (at most 2 levels; 40 px left 9);
#: the compact model, whose 17 convs see 17 px, 16 px (at most 1 level, mean 0.0002; 12 px left 3).
AUTO_PAD = {"rrdbnet": 48, "srvgg": 16}
#: ``batch = "auto"`` per architecture: the compact model's small calls gain from batching
#: windows; RRDBNet's large windows already keep the cores busy, and batching them costs memory.
AUTO_BATCH = {"rrdbnet": 1, "srvgg": 4}


def build_upscaler(
    converted: Any,
    *,
    engine: Any = None,
    precision: str = "auto",
    tile: int | str = "auto",
    pad: int | str = "auto",
    batch: int | str = "auto",
    out_dtype: str = "uint8",
) -> TiledUpscaler:
    """A :class:`TiledUpscaler` for a converted model, with ``"auto"`` settings resolved for this device.

    ``engine``: the :class:`vsr.engine.Engine` class to run on (default: the Keras engine).
    ``precision="auto"``: see :func:`vsr.device.default_precision`.
    ``tile="auto"``: the largest tile whose batch of windows fits
    :func:`vsr.device.memory_budget` (see :func:`auto_tile`).
    ``pad="auto"``, ``batch="auto"``: :data:`AUTO_PAD`, :data:`AUTO_BATCH` for the model's architecture.
    """
    from vsr.device import has_gpu, memory_budget
    from vsr.engine import KerasEngine, resolve_precision

    engine_class = engine or KerasEngine
    precision = resolve_precision(precision, has_gpu())
    pad = AUTO_PAD.get(converted.arch, max(AUTO_PAD.values())) if pad == "auto" else int(pad)
    batch = AUTO_BATCH.get(converted.arch, 1) if batch == "auto" else int(batch)
    runner = engine_class.build(converted, precision, out_dtype, batch)
    if tile == "auto":
        network = runner.network
        multiple = int(network.input_multiple)
        tile = auto_tile(activation_bytes_per_pixel(network), pad, batch, memory_budget(), multiple)
    return TiledUpscaler(runner, converted.scale, int(tile), pad, batch)
