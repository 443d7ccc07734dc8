"""Opening media with PyAV, and turning FFmpeg's failures into one clear line."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.colour import effective_matrix, sws_matrix, sws_range
from vsr.errors import UsageError, VsrError, shown
from vsr.files import write_atomic
from vsr.frame import Colour

# === The one table of media suffixes ===
#: Still images vsr reads and writes, by suffix: the encoder that writes them, and its pixel format for 8-bit
#: and for 16-bit pictures, then for 8-bit and 16-bit pictures with transparency (None: the format has none).
IMAGE_CODECS: dict[str, tuple[str, str, str, str | None, str | None]] = {
    ".png": ("png", "rgb24", "rgb48be", "rgba", "rgba64be"),
    ".tif": ("tiff", "rgb24", "rgb48le", "rgba", "rgba64le"),
    ".tiff": ("tiff", "rgb24", "rgb48le", "rgba", "rgba64le"),
    ".bmp": ("bmp", "bgr24", "bgr24", None, None),
    ".webp": ("libwebp", "yuv420p", "yuv420p", "yuva420p", "yuva420p"),
    ".jpg": ("mjpeg", "yuvj444p", "yuvj444p", None, None),
    ".jpeg": ("mjpeg", "yuvj444p", "yuvj444p", None, None),
}
IMAGE_SUFFIXES = frozenset(IMAGE_CODECS)
#: Suffixes a folder scan picks up unless --include says otherwise.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mkv .mov .avi .webm .wmv .flv .mpg .mpeg .m2v .ts .m2ts .mts .vob .3gp .ogv .mxf .y4m".split()
) | {".gif", ".apng"}
#: Containers whose suffix a default output keeps; the others become .mkv, which holds any stream. Animations
#: (GIF, APNG; animated WebP as an image suffix) stay animations: stickers and loops are used where they are.
KEEP_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".gif", ".apng"})
IMAGE_FORMATS = {"png_pipe", "jpeg_pipe", "image2", "bmp_pipe", "tiff_pipe", "webp_pipe", "jpegls_pipe"}


def check_readable(path: Path) -> None:
    """Refuse a missing, non-regular or empty input before FFmpeg sees it."""
    if not path.exists():
        raise VsrError(f"{path}: no such file")
    if path.is_dir():
        raise VsrError(f"{path}: is a directory, not a video file")
    if not path.is_file():
        raise VsrError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise VsrError(f"{path}: cannot read: {exc.strerror}") from None
    if size == 0:
        raise VsrError(f"{path}: file is empty")


def is_apng(path: Path) -> bool:
    """Whether ``path`` is an animated PNG (an ``acTL`` chunk before the first ``IDAT``), whatever its suffix."""
    try:
        with path.open("rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            while len(header := fh.read(8)) == 8:
                length, kind = int.from_bytes(header[:4], "big"), header[4:]
                if kind in (b"acTL", b"IDAT"):
                    return kind == b"acTL"
                fh.seek(length + 4, 1)  # the data and its CRC
    except OSError:
        pass
    return False


def open_input(path: Path) -> Any:
    """Open ``path`` for reading with PyAV, or raise a one-line error.

    An animated PNG is opened as one (FFmpeg takes a ``.png`` for a still and reads its first frame only).
    """
    check_readable(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore", format="apng" if is_apng(path) else None)
    except av.error.FFmpegError as exc:
        raise VsrError(f"{path}: not a video or image FFmpeg can read ({ffmpeg_reason(exc)})") from None


def video_stream(container: Any, path: Path, track: int | None = None) -> Any:
    """The video track to upscale, or a one-line error.

    ``track`` counts the input's video streams from 0, as ffmpeg's ``-map
    0:v:N`` does; by default the one flagged default, else the first. Cover
    art (attached pictures) is never the video.
    """
    videos = list(container.streams.video)
    if track is not None:
        if not 0 <= track < len(videos):
            raise UsageError(f"{path}: has no video track {track} (it has {len(videos)}: 0 to {len(videos) - 1})")
        chosen = videos[track]
        if chosen.disposition & av.stream.Disposition.attached_pic:
            raise UsageError(f"{path}: video track {track} is cover art, not a video")
    else:
        streams = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise VsrError(f"{path}: has no video stream (found: {', '.join(kinds)})")
        chosen = next((s for s in streams if s.disposition & av.stream.Disposition.default), streams[0])
    if not chosen.codec_context.width or not chosen.codec_context.height:
        raise VsrError(f"{path}: video stream has no frame size (corrupt or unsupported)")
    return chosen


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's message without PyAV's errno and file-name decorations."""
    if isinstance(exc, av.error.FFmpegError):
        return str(exc.strerror or exc).strip().rstrip(".")
    return str(exc)


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether the FFmpeg pixel format ``pix_fmt`` carries transparency (an alpha plane)."""
    try:
        return pix_fmt is not None and any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.error.FFmpegError):
        return False


def to_rgb(av_frame: Any) -> tuple[Any, Colour]:
    """A decoded frame as ``H x W x 3`` RGB (uint8, or uint16 for deep formats) and its colour description.

    YUV is converted with the frame's own matrix and range; untagged frames
    get BT.709 from 720 lines up and BT.601 below (see :mod:`vsr.colour`).
    """
    pixels, _, colour = to_rgba(av_frame, alpha=False)
    return pixels, colour


def to_rgba(av_frame: Any, alpha: bool = True) -> tuple[Any, Any, Colour]:
    """As :func:`to_rgb`, with the frame's alpha plane (``H x W``, the pixels' dtype) where it has one, else None."""
    colour = Colour.of(av_frame)
    fmt = av_frame.format
    deep = max((c.bits for c in fmt.components), default=8) > 8
    alpha = alpha and (has_alpha(fmt.name) or fmt.name == "pal8")  # a palette may hold transparent entries
    target = ("rgba64le" if deep else "rgba") if alpha else ("rgb48le" if deep else "rgb24")
    if fmt.is_rgb:
        rgb = av_frame.reformat(format=target)
    else:
        rgb = av_frame.reformat(
            format=target,
            src_colorspace=sws_matrix(effective_matrix(colour, av_frame.height)),
            src_color_range=sws_range(colour.range, fmt.name.startswith("yuvj")),
            interpolation="BICUBIC",
        )
    pixels = rgb.to_ndarray()
    if pixels.ndim == 2:  # grey formats
        pixels = pixels[..., None].repeat(3, axis=2)
    return pixels[..., :3], (np.ascontiguousarray(pixels[..., 3]) if alpha else None), colour


def read_png(path: Path) -> np.ndarray:
    """An image file as 8-bit RGB."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, OSError) as exc:
        raise VsrError(f"{shown(path)}: cannot read image ({exc})") from None


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG, written atomically (synced, then renamed into place)."""
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    ctx.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    try:
        write_atomic(path, b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None)))
    except OSError as exc:
        raise VsrError(f"{shown(path)}: cannot write: {exc.strerror or exc}") from None
