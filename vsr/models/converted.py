"""A network recognised in a model file: its architecture, config and weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ConvertedModel:
    """An architecture config plus Keras weights by layer name.

    Attributes:
        arch: ``rrdbnet`` or ``srvgg``.
        config: keyword arguments of the Keras model class.
        weights: each weighted layer's arrays, in Keras order (kernel HWIO, bias, ...).
    """

    arch: str
    config: dict[str, int]
    weights: dict[str, list[np.ndarray]]

    @property
    def scale(self) -> int:
        """Output size over input size."""
        if self.arch == "srvgg":
            return int(self.config.get("upscale", 4))
        return int(self.config.get("scale", 4))

    @property
    def parameters(self) -> int:
        """Number of weights."""
        return sum(w.size for ws in self.weights.values() for w in ws)
