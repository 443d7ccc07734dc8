"""HDR10's static metadata (mastering display, content light level), read from frames and written by encoders."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

#: Frame side data that carries dynamic HDR metadata vsr cannot carry over (by PyAV's type name).
_DYNAMIC = {"DOVI_RPU_BUFFER": "Dolby Vision", "DOVI_METADATA": "Dolby Vision", "DYNAMIC_HDR_PLUS": "HDR10+"}


@dataclass(frozen=True)
class HdrMetadata:
    """The static metadata of an HDR10 stream, as FFmpeg's side data gives it.

    Attributes:
        primaries: the mastering display's red, green, blue and white point as CIE 1931 (x, y), or None.
        luminance: the mastering display's (max, min) luminance in cd/m², or None.
        max_cll: MaxCLL, the brightest pixel of the stream in cd/m² (0: not given).
        max_fall: MaxFALL, the brightest frame average in cd/m² (0: not given).
        dynamic: dynamic metadata the source carries and vsr drops ("Dolby Vision", "HDR10+").
    """

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    luminance: tuple[Fraction, Fraction] | None = None
    max_cll: int = 0
    max_fall: int = 0
    dynamic: tuple[str, ...] = ()

    @property
    def static(self) -> bool:
        """Whether there is static metadata to write."""
        return self.primaries is not None or self.luminance is not None or bool(self.max_cll or self.max_fall)

    def x265_params(self) -> list[str]:
        """x265's ``master-display``/``max-cll`` (chromaticities in 0.00002, luminance in 0.0001 cd/m²) and the
        HDR10 signalling flags."""
        params = ["hdr10=1", "repeat-headers=1"]
        if self.primaries is not None and self.luminance is not None:
            r, g, b, wp = ((round(x * 50000), round(y * 50000)) for x, y in self.primaries)
            high, low = (round(v * 10000) for v in self.luminance)
            params.append(f"master-display=G{g}B{b}R{r}WP{wp}L({high},{low})".replace(" ", ""))
        if self.max_cll or self.max_fall:
            params.append(f"max-cll={self.max_cll},{self.max_fall}")
        return params

    def svtav1_params(self) -> list[str]:
        """SVT-AV1's ``mastering-display``/``content-light`` (decimal chromaticities and cd/m²)."""
        params = []
        if self.primaries is not None and self.luminance is not None:
            r, g, b, wp = (f"({float(x):.4f},{float(y):.4f})" for x, y in self.primaries)
            high, low = self.luminance
            params.append(f"mastering-display=G{g}B{b}R{r}WP{wp}L({float(high):.4f},{float(low):.4f})")
        if self.max_cll or self.max_fall:
            params.append(f"content-light={self.max_cll},{self.max_fall}")
        return params


def read_hdr(frame: Any) -> HdrMetadata | None:
    """The HDR metadata in a decoded PyAV frame's side data, or None where it carries none.

    FFmpeg puts the container's (MP4 ``mdcv``/``clli``, Matroska's colour
    elements) and the bitstream's (HEVC SEI, AV1 metadata OBUs) there alike.
    Side data of a type PyAV does not know is passed over (PyAV raises for it).
    """
    primaries = luminance = None
    cll = fall = 0
    dynamic: list[str] = []
    side_data = frame.side_data
    for i in range(len(side_data)):
        try:
            item = side_data[i]
            kind = str(item.type).rsplit(".", 1)[-1]
            data = bytes(item)
        except (ValueError, TypeError):
            continue
        if kind == "MASTERING_DISPLAY_METADATA" and len(data) >= 88:
            ints = struct.unpack("=22i", data[:88])  # AVMasteringDisplayMetadata: rationals, then two flags
            rational = [Fraction(n, d) if d else Fraction(0) for n, d in zip(ints[0:20:2], ints[1:20:2], strict=True)]
            if ints[20]:  # has_primaries: R, G, B, then the white point
                primaries = tuple((rational[i], rational[i + 1]) for i in range(0, 8, 2))
            if ints[21]:  # has_luminance: min, then max
                luminance = (rational[9], rational[8])
        elif kind == "CONTENT_LIGHT_LEVEL" and len(data) >= 8:
            cll, fall = struct.unpack("=2I", data[:8])
        elif kind in _DYNAMIC and _DYNAMIC[kind] not in dynamic:
            dynamic.append(_DYNAMIC[kind])
    meta = HdrMetadata(primaries, luminance, cll, fall, tuple(dynamic))
    return meta if meta.static or meta.dynamic else None
