"""A third-party plugin, outside the vsr package: tiny random models, an ``invert`` stage, a ``paced`` decoder.

Loaded in tests through ``VSR_PLUGINS=vsr_tiny`` (with tests/plugins on the
path), exactly as a user would try an uninstalled plugin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vsr import ConvertedModel, Frame, ModelSpec, Stage, hookimpl

TINY_SRVGG = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 1, "upscale": 4}
TINY_RRDB = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def random_weights(arch: str, config: dict[str, int], seed: int = 0) -> ConvertedModel:
    """Weights for ``arch``/``config`` from a seeded generator, small enough to keep outputs in range."""
    from vsr import RRDBNet, SRVGGNetCompact

    model = (SRVGGNetCompact if arch == "srvgg" else RRDBNet)(**config)
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in model.layers:
        if layer.weights:
            weights[layer.name] = [rng.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.weights]
    return ConvertedModel(arch, dict(config), weights)


@hookimpl
def register_models(register) -> None:
    register(
        ModelSpec(
            "tiny-srvgg",
            "srvgg",
            4,
            "test: random 4-feature SRVGG",
            "none",
            (),
            lambda: random_weights("srvgg", TINY_SRVGG),
        )
    )
    register(
        ModelSpec(
            "tiny-rrdb",
            "rrdbnet",
            4,
            "test: random 1-block RRDBNet",
            "none",
            (),
            lambda: random_weights("rrdbnet", TINY_RRDB),
        )
    )


@dataclass
class InvertOptions:
    amount: float = 1.0


class Invert(Stage):
    """Inverts colours: a visible, checkable effect for plugin tests."""

    name = "invert"
    description = "test plugin: invert colours"
    Options = InvertOptions

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        for frame in frames:
            top = np.iinfo(frame.pixels.dtype).max
            yield frame.with_pixels((top - frame.pixels).astype(frame.pixels.dtype))


@hookimpl
def register_smoothers(register) -> None:
    register(Invert)


@dataclass
class PacedOptions:
    delay: float = 0.05
    """Seconds of pretend work per frame."""


class Paced(Stage):
    """The built-in decoder, slowed to ``delay`` s per frame: a run long enough to kill half-way, on any machine."""

    name = "paced"
    description = "test plugin: the pyav decoder with a pause per frame"
    Options = PacedOptions

    def _decoder(self) -> Stage:
        from stages.decode import PyAVDecoder

        return PyAVDecoder(PyAVDecoder.Options(), self.job)

    def probe(self):
        return self._decoder().probe()

    def frame_times(self):
        return self._decoder().frame_times()

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        for frame in self._decoder().process(frames):
            time.sleep(self.options.delay)
            yield frame


@hookimpl
def register_decoders(register) -> None:
    register(Paced)
