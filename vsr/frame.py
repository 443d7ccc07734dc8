"""The unit that travels between stages: RGB pixels plus timing and colour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

# FFmpeg's enum values (AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic).
SPACE_BT709 = 1
SPACE_UNSPECIFIED = 2
SPACE_FCC = 4
SPACE_BT470BG = 5
SPACE_SMPTE170M = 6
SPACE_SMPTE240M = 7
SPACE_BT2020_NCL = 9
SPACE_BT2020_CL = 10
RANGE_UNSPECIFIED = 0
RANGE_TV = 1  # limited, "MPEG"
RANGE_PC = 2  # full, "JPEG"
PRIMARIES_BT709 = 1
PRIMARIES_UNSPECIFIED = 2
TRC_BT709 = 1
TRC_UNSPECIFIED = 2
TRC_PQ = 16  # SMPTE ST 2084: HDR10, Dolby Vision
TRC_HLG = 18  # ARIB STD-B67: broadcast HDR

_SPACE_NAMES = {
    SPACE_BT709: "bt709",
    SPACE_FCC: "fcc",
    SPACE_BT470BG: "bt470bg",
    SPACE_SMPTE170M: "smpte170m",
    SPACE_SMPTE240M: "smpte240m",
    SPACE_BT2020_NCL: "bt2020nc",
    SPACE_BT2020_CL: "bt2020c",
}


@dataclass(frozen=True)
class Colour:
    """How the source's pixels were encoded, in FFmpeg's enum values.

    ``matrix`` is the YUV matrix (``colorspace`` in FFmpeg), ``range`` is
    limited (tv) or full (pc). ``UNSPECIFIED`` values mean the source did not
    say; the encoder then picks a documented default.
    """

    matrix: int = SPACE_UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
    primaries: int = PRIMARIES_UNSPECIFIED
    transfer: int = TRC_UNSPECIFIED

    @classmethod
    def of(cls, source: Any) -> Colour:
        """The colour description of a PyAV frame or codec context (both carry these attributes)."""
        return cls(
            matrix=int(source.colorspace or SPACE_UNSPECIFIED),
            range=int(source.color_range or RANGE_UNSPECIFIED),
            primaries=int(source.color_primaries or PRIMARIES_UNSPECIFIED),
            transfer=int(source.color_trc or TRC_UNSPECIFIED),
        )

    @property
    def hdr(self) -> str:
        """``"PQ"`` or ``"HLG"`` for HDR transfers, else ``""``."""
        return {TRC_PQ: "PQ", TRC_HLG: "HLG"}.get(self.transfer, "")

    @property
    def matrix_name(self) -> str:
        return _SPACE_NAMES.get(self.matrix, "unknown")


@dataclass
class Frame:
    """One video frame.

    Attributes:
        pixels: ``H x W x 3`` RGB, ``uint8`` (0..255) or ``uint16`` (0..65535,
            used for sources or outputs deeper than 8 bits).
        pts: presentation timestamp in ``time_base`` units, as the source
            had it (never renumbered, so variable frame rate survives).
        time_base: unit of ``pts``.
        colour: colour description of the source.
        index: 0-based position of the frame in the decoded stream.
        alpha: the transparency plane, ``H x W`` in the pixels' dtype (0:
            transparent), for sources that have one; None for opaque video.
            Upscalers scale it with the pixels; encoders write it where the
            output holds transparency.
        source: for upscaled frames, the low-resolution pixels they were made
            from (set by upscalers; smoothers use it to find motion cheaply).
        duration: how long the frame is shown, in ``time_base`` units, where the
            source says (animations' last frames, above all); None: until the next.
        carry: history that stages with memory need to go on after this
            frame, by stage role (see :meth:`carrying`). Resumable runs save
            it with each finished segment and hand it back to the stage when
            the next segment starts in another process.
    """

    pixels: np.ndarray
    pts: int | None
    time_base: Fraction
    colour: Colour
    index: int
    source: np.ndarray | None = None
    alpha: np.ndarray | None = None
    duration: int | None = None
    carry: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def with_pixels(self, pixels: np.ndarray) -> Frame:
        """The same frame (timing, colour) with new pixels."""
        return replace(self, pixels=pixels)

    def carrying(self, role: str, state: Mapping[str, np.ndarray]) -> Frame:
        """The same frame, with ``state``: what the stage in ``role`` needs to continue after it.

        The arrays must be everything the stage keeps between frames (it gets
        exactly them back as ``job.state``), and are stored losslessly.
        """
        return replace(self, carry={**self.carry, role: dict(state)})


def to_levels(pixels: np.ndarray) -> np.ndarray:
    """Pixels as float32 on the 0..255 scale, whatever their integer depth."""
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) * (255.0 / 65535.0)
    return pixels.astype(np.float32)


def from_levels(levels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`to_levels`: round back to uint8 or uint16 pixels."""
    if dtype == np.uint16:
        return np.clip(np.round(levels * (65535.0 / 255.0)), 0, 65535).astype(np.uint16)
    return np.clip(np.round(levels), 0, 255).astype(np.uint8)
