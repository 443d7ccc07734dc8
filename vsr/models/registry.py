"""Model specs: how a named model is found, converted and described."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vsr.models.converted import ConvertedModel
from vsr.models.ncnn import convert


@dataclass(frozen=True)
class ModelSpec:
    """A model that presets and ``--set upscale.model=NAME`` can name.

    Attributes:
        name: registry name, e.g. ``realesrgan-x4plus-anime``.
        arch: ``rrdbnet`` or ``srvgg``.
        scale: upscaling factor.
        description: one line for listings.
        licence: licence of the weights.
        sources: the files the weights are converted from; their SHA-256
            keys the converted cache.
        convert: returns the architecture config and weights from ``sources``.
        origin: where the weights come from, for listings (e.g. ``imported (pytorch)``).
    """

    name: str
    arch: str
    scale: int
    description: str
    licence: str
    sources: tuple[Path, ...]
    convert: Callable[[], ConvertedModel]
    origin: str = ""


def ncnn_model(name: str, param: Path, description: str, licence: str, scale: int = 4) -> ModelSpec:
    """A spec for an ncnn ``.param`` with its ``.bin`` beside it."""
    bin_path = param.with_suffix(".bin")
    arch = "srvgg" if "ANIMAVIDEO" in param.name.upper() else "rrdbnet"
    return ModelSpec(
        name=name,
        arch=arch,
        scale=scale,
        description=description,
        licence=licence,
        sources=(param, bin_path),
        convert=lambda: convert(param, bin_path),
        origin="ncnn files",
    )
