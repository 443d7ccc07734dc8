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


#: Sizes no ESRGAN-family model comes near (the largest real ones: 64 features, 23 blocks, 16 convs).
LIMITS = {"num_feat": 1024, "num_grow_ch": 1024, "num_block": 100, "num_conv": 100}
SCALES = {1, 2, 3, 4, 8}


def expected_shapes(arch: str, config: dict[str, int]) -> dict[str, list[tuple[int, ...]]]:
    """Every weighted layer's array shapes (Keras order: HWIO kernel, bias; PReLU slopes) for ``config``."""

    def conv(cin: int, cout: int) -> list[tuple[int, ...]]:
        return [(3, 3, cin, cout), (cout,)]

    if arch == "srvgg":
        feat, cin = config["num_feat"], config["num_in_ch"]
        shapes = {"body_0": conv(cin, feat), "body_1": [(1, 1, feat)]}
        for i in range(config["num_conv"]):
            shapes[f"body_{2 * i + 2}"] = conv(feat, feat)
            shapes[f"body_{2 * i + 3}"] = [(1, 1, feat)]
        shapes[f"body_{2 * config['num_conv'] + 2}"] = conv(feat, config["num_out_ch"] * config["upscale"] ** 2)
        return shapes
    feat, grow, ups = config["num_feat"], config["num_grow_ch"], config.get("num_upsample", 2)  # RRDBNet's defaults
    unshuffle = 2**ups // config.get("scale", 4)
    shapes = {"conv_first": conv(config["num_in_ch"] * unshuffle**2, feat)}
    for b in range(config["num_block"]):
        for k in (1, 2, 3):
            for c in range(1, 6):
                shapes[f"body_{b}_rdb{k}_conv{c}"] = conv(feat + (c - 1) * grow, grow if c < 5 else feat)
    for name in ["conv_body", *(f"conv_up{i}" for i in range(1, ups + 1)), "conv_hr"]:
        shapes[name] = conv(feat, feat)
    shapes["conv_last"] = conv(feat, config["num_out_ch"])
    return shapes


def check_architecture(model: ConvertedModel, source: str) -> None:
    """Refuse a network vsr could not safely build: sizes beyond any real model, or layers that disagree.

    Raises:
        VsrError: with the first problem, in one line.
    """
    from vsr.errors import VsrError

    config = model.config
    if model.arch not in ("rrdbnet", "srvgg"):
        raise VsrError(f"{source}: unknown architecture {model.arch!r}")
    for key, limit in LIMITS.items():
        if key in config and not 1 <= config[key] <= limit:
            raise VsrError(f"{source}: {key}={config[key]} is outside 1..{limit}; no ESRGAN-family model is that size")
    if config.get("num_in_ch") != 3 or config.get("num_out_ch") != 3:
        raise VsrError(f"{source}: a network for {config.get('num_in_ch')}-channel images; vsr upscales RGB")
    if model.scale not in SCALES or not 0 <= config.get("num_upsample", 2) <= 3:
        raise VsrError(f"{source}: scale x{model.scale} is not one vsr can use (x1, x2, x3, x4 or x8)")
    expected = expected_shapes(model.arch, config)
    if set(expected) != set(model.weights):
        odd = sorted(set(expected) ^ set(model.weights))[:3]
        raise VsrError(f"{source}: layers do not match a {model.arch} of this size ({', '.join(map(repr, odd))}, ...)")
    for name, shapes in expected.items():
        found = [tuple(w.shape) for w in model.weights[name]]
        if found != shapes:
            raise VsrError(f"{source}: layer {name!r} has shapes {found}, expected {shapes} for this config")
