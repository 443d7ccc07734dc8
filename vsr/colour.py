"""Colour conversion decisions between YUV sources, RGB frames and YUV outputs."""

from __future__ import annotations

from av.video.reformatter import ColorRange, Colorspace

from vsr.frame import (
    PRIMARIES_BT709,
    PRIMARIES_UNSPECIFIED,
    RANGE_PC,
    RANGE_TV,
    RANGE_UNSPECIFIED,
    SPACE_BT470BG,
    SPACE_BT709,
    SPACE_BT2020_CL,
    SPACE_BT2020_NCL,
    SPACE_FCC,
    SPACE_SMPTE170M,
    SPACE_SMPTE240M,
    SPACE_UNSPECIFIED,
    TRC_BT709,
    TRC_UNSPECIFIED,
    Colour,
)

# AVColorSpace -> swscale's matrix choice
_SWS_MATRIX = {
    SPACE_BT709: Colorspace.ITU709,
    SPACE_FCC: Colorspace.FCC,
    SPACE_BT470BG: Colorspace.ITU601,
    SPACE_SMPTE170M: Colorspace.ITU601,
    SPACE_SMPTE240M: Colorspace.SMPTE240M,
    SPACE_BT2020_NCL: Colorspace.BT2020,
    SPACE_BT2020_CL: Colorspace.BT2020,
}

HD_HEIGHT = 720


def effective_matrix(colour: Colour, height: int) -> int:
    """The YUV matrix to assume: the tagged one, else BT.709 for HD and BT.601 for SD.

    This is the usual convention of players (and of FFmpeg's scale filter
    when asked to guess) for untagged material.
    """
    if colour.matrix in _SWS_MATRIX:
        return colour.matrix
    return SPACE_BT709 if height >= HD_HEIGHT else SPACE_SMPTE170M


def sws_matrix(matrix: int) -> Colorspace:
    return _SWS_MATRIX.get(matrix, Colorspace.ITU601)


def sws_range(colour_range: int, full_range_format: bool = False) -> ColorRange:
    """Limited (MPEG) unless the source says full, or its pixel format is a full-range ``yuvj`` one."""
    if colour_range == RANGE_PC or (colour_range == RANGE_UNSPECIFIED and full_range_format):
        return ColorRange.JPEG
    return ColorRange.MPEG


def output_colour(source: Colour, output_height: int) -> Colour:
    """Tags for the encoded output: the source's where it gave them.

    Untagged sources get BT.709 for HD output (the matrix that ``vsr`` then
    also uses to convert RGB to YUV) and limited range, which is what players
    assume for YUV video. A source tagged with an SD matrix keeps it.
    """
    if source.matrix in _SWS_MATRIX:
        matrix = source.matrix
    else:
        matrix = effective_matrix(Colour(), output_height)
    primaries = (
        source.primaries
        if source.primaries != PRIMARIES_UNSPECIFIED
        else (PRIMARIES_BT709 if matrix == SPACE_BT709 else PRIMARIES_UNSPECIFIED)
    )
    transfer = (
        source.transfer
        if source.transfer != TRC_UNSPECIFIED
        else (TRC_BT709 if matrix == SPACE_BT709 else TRC_UNSPECIFIED)
    )
    return Colour(matrix=matrix, range=RANGE_TV, primaries=primaries, transfer=transfer)


__all__ = ["SPACE_UNSPECIFIED", "effective_matrix", "output_colour", "sws_matrix", "sws_range"]
