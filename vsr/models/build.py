"""Build a Keras network from a converted model, in the requested precision."""

from __future__ import annotations

from typing import Any

from vsr.errors import VsrError
from vsr.models.converted import ConvertedModel

PRECISION_POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def network_class(arch: str) -> Any:
    """The Keras model class of an architecture name (``rrdbnet``, ``srvgg``)."""
    from vsr.models.rrdbnet import RRDBNet
    from vsr.models.srvgg import SRVGGNetCompact

    classes = {"rrdbnet": RRDBNet, "srvgg": SRVGGNetCompact}
    if arch not in classes:
        raise VsrError(f"unknown model architecture {arch!r}")
    return classes[arch]


def build_network(converted: ConvertedModel, precision: str = "float32") -> Any:
    """A Keras model with the converted weights loaded by layer name."""
    model = network_class(converted.arch)(**converted.config, dtype=PRECISION_POLICIES[precision])
    expected = {layer.name for layer in model.layers if layer.weights}
    missing = sorted(expected - set(converted.weights))
    extra = sorted(set(converted.weights) - expected)
    if missing or extra:
        raise VsrError(
            f"weights do not fit the {converted.arch} network (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, weights in converted.weights.items():
        layer = model.get_layer(name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [tuple(w.shape) for w in weights]:
            raise VsrError(f"weights for layer {name} have shapes {[w.shape for w in weights]}, expected {shapes}")
        layer.set_weights(weights)
    return model
