"""Inference engines: what runs an upscaling network on batches of same-shaped windows.

The Keras network (:mod:`vsr.models`) is the one definition of every model.
An engine takes it (built from the converted weights) and runs it: the
built-in ``keras`` engine through the Keras backend itself, plugins through
other runtimes (vsr's own ``openvino`` plugin converts the Keras graph to
OpenVINO). :class:`vsr.inference.TiledUpscaler` cuts frames into windows and
hands them to an engine, so tiling, batching and integer in/out behave the
same whichever engine runs.

Plugins register engines through the ``register_upscalers`` hook
(``register(MyEngine)``); ``engine = "NAME"`` in the upscale options picks
one, ``engine = "auto"`` the highest :meth:`Engine.auto_rank` among those
that can run here.

Every engine runs the same graph: integer pixels in (``uint8`` or
``uint16``), divided by their maximum, the network, clipped to 0..1, scaled to
the output's maximum and rounded (:func:`io_graph`). Float windows in and out
skip the scaling and rounding (parity checks against other engines).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import numpy as np

from vsr.models.converted import ConvertedModel

#: vsr's names for precisions, as :mod:`vsr.models.build` takes them
PRECISIONS = ("float32", "bfloat16", "float16")


def resolve_precision(precision: str, gpu: bool) -> str:
    """``"auto"`` resolved for this machine (:func:`vsr.device.default_precision`); others as given."""
    from vsr.device import default_precision

    return default_precision(gpu) if precision == "auto" else precision


def converted_digest(converted: ConvertedModel) -> str:
    """SHA-256 of a converted model's architecture, config and weights (keys caches of its compiled forms)."""
    digest = hashlib.sha256(json.dumps([converted.arch, converted.config], sort_keys=True).encode())
    for name in sorted(converted.weights):
        digest.update(name.encode())
        for array in converted.weights[name]:
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _io_layers() -> tuple[type, type]:
    import keras
    from keras import ops

    class Normalise(keras.layers.Layer):
        def __init__(self, maximum: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.maximum = maximum

        def call(self, x: Any) -> Any:
            x = ops.cast(x, "float32")
            return x if self.maximum == 1.0 else x / self.maximum

    class Quantise(keras.layers.Layer):
        def __init__(self, maximum: float, out_dtype: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.maximum = maximum
            self.out_dtype = out_dtype

        def call(self, x: Any) -> Any:
            x = ops.cast(x, "float32")
            if self.out_dtype == "float32":
                return x
            x = ops.clip(x, 0.0, 1.0) * self.maximum
            return ops.cast(ops.round(x), self.out_dtype)

    return Normalise, Quantise


def _maximum(dtype: str) -> float:
    return float(np.iinfo(np.dtype(dtype)).max) if np.dtype(dtype).kind in "ui" else 1.0


def io_graph(network: Any, in_dtype: str, out_dtype: str) -> Any:
    """A Keras model: ``in_dtype`` pixels (N, H, W, 3) -> the network -> ``out_dtype`` pixels.

    Integer types are scaled to and from 0..1 (rounding, clipping to the
    range); ``float32`` passes values through unchanged.
    """
    import keras

    normalise, quantise = _io_layers()
    inputs = keras.Input(shape=(None, None, 3), dtype=in_dtype, name="pixels")
    x = normalise(_maximum(in_dtype), name="normalise")(inputs)
    outputs = quantise(_maximum(out_dtype), out_dtype, name="quantise")(network(x))
    return keras.Model(inputs, outputs, name=f"infer_{in_dtype}_{out_dtype}")


class Engine:
    """Runs one network, in one precision, on batches of same-shaped windows.

    Subclasses set ``name`` and ``description`` and implement :meth:`build`
    and :meth:`run`; they set :attr:`network` (the Keras network, which the
    tiler asks for its input multiple and memory use), :attr:`precision`
    (what the engine really computes in, read back from the runtime where it
    can say) and :attr:`device` (in words, for the log line).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    network: Any
    precision: str
    device: str
    out_dtype: str

    @classmethod
    def missing(cls) -> str | None:
        """Why this engine cannot run here (a package not installed, say), or ``None``."""
        return None

    @classmethod
    def auto_rank(cls, gpu: bool) -> int | None:
        """Preference under ``engine = "auto"`` (highest wins); ``None``: never chosen automatically."""
        return None

    @classmethod
    def build(cls, converted: ConvertedModel, precision: str, out_dtype: str, batch: int) -> Engine:
        """The engine for ``converted``, computing in ``precision`` (not ``"auto"``).

        ``batch`` is how many windows the tiler hands over per :meth:`run`.
        """
        raise NotImplementedError

    def run(self, windows: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` pixels (uint8, uint16 or float32) -> ``(N, s*H, s*W, 3)`` of :attr:`out_dtype`."""
        raise NotImplementedError


class KerasEngine(Engine):
    """The network through the Keras backend (TensorFlow, JAX or torch), compiled."""

    name = "keras"
    description = "the Keras backend itself (TensorFlow, or JAX/torch with KERAS_BACKEND); GPUs"

    def __init__(self, network: Any, out_dtype: str = "uint8", precision: str = "float32") -> None:
        from vsr.device import describe_device

        self.network = network
        self.out_dtype = out_dtype
        self.precision = precision
        self.device = describe_device()
        self._graphs: dict[str, Any] = {}

    @classmethod
    def auto_rank(cls, gpu: bool) -> int | None:
        return 0  # always runs: the fallback

    @classmethod
    def build(cls, converted: ConvertedModel, precision: str, out_dtype: str, batch: int) -> KerasEngine:
        from vsr.models.build import build_network

        return cls(build_network(converted, precision), out_dtype, precision)

    def run(self, windows: np.ndarray) -> np.ndarray:
        key = str(windows.dtype)
        if key not in self._graphs:
            self._graphs[key] = io_graph(self.network, key, self.out_dtype)
        return np.asarray(self._graphs[key].predict_on_batch(windows))
