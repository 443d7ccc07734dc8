"""What FFmpeg's encoders can write: frame sizes, and a container for resumable segments."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from fractions import Fraction
from pathlib import Path

import av
import av.error

from vsr.errors import UsageError, shown
from vsr.media import ffmpeg_reason

#: Largest frame some encoders take at all, where opening one to find out costs gigabytes of memory.
_MAX_SIZE = {"libsvtav1": (16384, 8704)}
#: Encoders to check from the table above (or not at all) rather than by opening them at the output size.
_COSTLY_TO_OPEN = {"libsvtav1", "libvpx", "libvpx-vp9", "libaom-av1", "librav1e"}
#: The highest level of a codec's standard: (name, most luma samples, longest side). Encoders write larger
#: pictures, but decoders (hardware ones above all) that keep to the standard refuse them.
_TOP_LEVEL = {"h264": ("H.264 level 6.2", 139264 * 256, 16880), "hevc": ("HEVC level 6.2", 35651584, 16888)}
_WHAT_TO_DO = "choose another codec (--set encode.codec=libsvtav1 takes up to 16384x8704), or a x2 model (--model)"


def check_size(codec: str, pix_fmt: str, options: dict[str, str], width: int, height: int, log: logging.Logger) -> None:
    """Refuse (UsageError) a frame size ``codec`` cannot write; warn about one beyond its standard's top level.

    Where opening the encoder is cheap, it is opened at that size with the
    run's options, so FFmpeg's own limits (MPEG-2's 12-bit size fields, x264's
    widest picture) are what decide.
    """
    most = _MAX_SIZE.get(codec)
    if most and (width > most[0] or height > most[1]):
        raise UsageError(f"{width}x{height} output: {codec} encodes at most {most[0]}x{most[1]}; {_WHAT_TO_DO}")
    if codec not in _COSTLY_TO_OPEN:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, pix_fmt, Fraction(1, 25)
        ctx.options = options
        try:
            ctx.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise UsageError(
                f"{width}x{height} output: {codec} cannot encode it ({ffmpeg_reason(exc)}); {_WHAT_TO_DO}"
            ) from None
    level = _TOP_LEVEL.get(av.Codec(codec, "w").canonical_name)
    if level and (width * height > level[1] or max(width, height) > level[2]):
        log.warning(
            "%dx%d output is beyond %s (%.1f Mpixels, %d px a side): %s writes it, but players and hardware "
            "decoders may refuse it; %s",
            width, height, level[0], level[1] / 1e6, level[2], codec, _WHAT_TO_DO,
        )  # fmt: skip


@functools.cache
def segment_suffix(encoder: str) -> str:
    """``.mp4`` or ``.mov``: a container for ``encoder``'s segments (MP4 first: QuickTime refuses AV1); ``""``: none."""
    codec = av.Codec(encoder, "w").canonical_name
    for fmt in ("mp4", "mov"):
        container = av.open(io.BytesIO(), "w", format=fmt)
        try:
            if codec in container.supported_codecs:
                return f".{fmt}"
        finally:
            container.close()
    return ""


#: What a container that cannot hold the preset's codec gets instead: (video encoder, audio codec for streams
#: it cannot copy, or None for none). WebM holds only VP8/VP9/AV1 with Vorbis/Opus; GIF, APNG and animated
#: WebP hold their own pictures and no sound.
CONTAINER_CODECS: dict[str, tuple[str, str | None]] = {
    "webm": ("libvpx-vp9", "libopus"),
    "gif": ("gif", None),
    "apng": ("apng", None),
    "webp": ("libwebp_anim", None),
}


def container_format(path: Path) -> str:
    """The FFmpeg muxer ``path``'s suffix names (``.webm`` -> ``webm``), as FFmpeg itself guesses it.

    Raises:
        UsageError: a suffix no muxer claims (``out.xyz``), or none at all.
    """
    probe = io.BytesIO()
    probe.name = path.name  # what FFmpeg guesses the format from; nothing is written
    try:
        container = av.open(probe, "w")
    except (av.error.FFmpegError, ValueError):
        raise UsageError(
            f"{shown(path)}: no output format has the suffix {path.suffix or '(none)'!r}; "
            "use a video suffix such as .mp4, .mkv, .mov or .webm"
        ) from None
    try:
        return str(container.format.name)
    finally:
        container.close()


#: Muxers that keep no codec table and write what they do not know as a data stream: the codecs they play.
PLAYABLE_IN = {
    "mpegts": {"h264", "hevc", "mpeg2video", "mpeg1video", "mpeg4", "av1", "aac", "mp3", "mp2", "ac3", "eac3", "opus"}
}


@functools.cache
def holds(fmt: str, encoder: str) -> bool:
    """Whether the container format ``fmt`` can hold what ``encoder`` writes.

    FFmpeg's muxer tables answer first (``'webm' format does not support 'libx264'``); where a muxer keeps
    no table (QuickTime with VP9, Ogg, MPEG-TS), a header is written to memory with the encoder opened on
    a 64x64 picture, as the join will write it, and the muxers that take anything are held to what plays.
    """
    from vsr.backend import quiet_native_stderr

    codec = av.Codec(encoder, "w").canonical_name
    if fmt in PLAYABLE_IN:
        return codec in PLAYABLE_IN[fmt]
    with quiet_native_stderr():  # x265 and SVT-AV1 print their settings when opened and freed
        return _header_accepted(fmt, encoder)


def _header_accepted(fmt: str, encoder: str) -> bool:
    """Whether ``fmt``'s muxer writes a header for a stream of ``encoder`` (its encoder freed on return)."""
    container = av.open(io.BytesIO(), "w", format=fmt)
    try:
        stream = container.add_stream(encoder, rate=25)
        formats = [f.name for f in stream.codec_context.codec.video_formats or ()]
        stream.width, stream.height = 64, 64
        stream.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        container.start_encoding()
    except (ValueError, av.error.FFmpegError):  # "'webm' format does not support 'libx264'", or the header
        return False
    finally:
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            container.close()
    return True
