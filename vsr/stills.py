"""Still images as a viewer shows them: EXIF orientation applied, ICC profile and EXIF kept.

A phone stores its photos as the sensor saw them and says in EXIF how to turn
them (orientation 6: rotate 90° clockwise). vsr upscales the picture as it is
shown: the decoder turns the pixels by the orientation, and the output says
orientation 1. The colour profile (ICC) and the rest of the EXIF (camera,
date, place) are written into JPEG and PNG outputs unchanged; WebP, TIFF and
BMP outputs get the turned pixels without them.

Pillow reads the tags (FFmpeg does not hand EXIF over); the pixels are still
decoded and encoded by FFmpeg, and the tags are put into the encoded file's
own segments (JPEG APP1/APP2, PNG eXIf/iCCP), so the pixels are encoded once.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ORIENTATION = 0x0112


@dataclass(frozen=True)
class StillTags:
    """What a still carries besides its pixels: EXIF orientation (1: upright), ICC profile, EXIF (as TIFF)."""

    orientation: int = 1
    icc_profile: bytes | None = None
    exif: bytes | None = None  # the TIFF structure, orientation reset to 1

    @property
    def turned(self) -> bool:
        """Whether width and height swap when the picture is shown (orientations 5 to 8)."""
        return self.orientation in (5, 6, 7, 8)


def read_still_tags(path: Path) -> StillTags:
    """The tags of the still at ``path`` (none, for a file Pillow cannot read: FFmpeg decides about those)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            exif = image.getexif()
            icc = image.info.get("icc_profile") or None
    except Exception:  # Pillow could not read it: then there is nothing vsr could keep
        return StillTags()
    orientation = int(exif.get(ORIENTATION, 1) or 1)
    if orientation not in range(1, 9):
        orientation = 1
    raw = None
    if len(exif):
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1  # the output is upright
        raw = exif.tobytes().removeprefix(b"Exif\x00\x00")
    return StillTags(orientation, icc, raw)


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (height, width[, channels]) turned as EXIF ``orientation`` says a viewer shows them."""
    turns = {
        2: lambda p: p[:, ::-1],
        3: lambda p: p[::-1, ::-1],
        4: lambda p: p[::-1],
        5: lambda p: p.swapaxes(0, 1),
        6: lambda p: np.rot90(p, -1),
        7: lambda p: np.rot90(p, -1)[::-1],
        8: lambda p: np.rot90(p, 1),
    }
    turn = turns.get(orientation)
    return pixels if turn is None else np.ascontiguousarray(turn(pixels))


def embed_still_tags(data: bytes, suffix: str, tags: StillTags) -> bytes:
    """An encoded JPEG or PNG with ``tags``' ICC profile and EXIF put in; other formats as they are."""
    if suffix in (".jpg", ".jpeg"):
        return _embed_jpeg(data, tags)
    if suffix == ".png":
        return _embed_png(data, tags)
    return data


def _embed_jpeg(data: bytes, tags: StillTags) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        return data
    segments = []
    if tags.exif:
        segments.append(_segment(0xE1, b"Exif\x00\x00" + tags.exif))
    if tags.icc_profile:  # ICC.1: split in chunks of at most 65519 bytes, numbered from 1
        size = 65519
        chunks = [tags.icc_profile[i : i + size] for i in range(0, len(tags.icc_profile), size)]
        for number, chunk in enumerate(chunks, start=1):
            segments.append(_segment(0xE2, b"ICC_PROFILE\x00" + bytes([number, len(chunks)]) + chunk))
    return data[:2] + b"".join(segments) + data[2:]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _embed_png(data: bytes, tags: StillTags) -> bytes:
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        return data
    ihdr_end = len(signature) + 8 + struct.unpack(">I", data[8:12])[0] + 4  # length, type, data, CRC
    chunks = b""
    if tags.icc_profile:
        chunks += _chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(tags.icc_profile))
    if tags.exif:
        chunks += _chunk(b"eXIf", tags.exif)
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
