"""Opening media with PyAV, and turning FFmpeg's failures into one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import av.error

from vsr.errors import VsrError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
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


def open_input(path: Path) -> Any:
    """Open ``path`` for reading with PyAV, or raise a one-line error."""
    check_readable(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VsrError(f"{path}: not a video or image FFmpeg can read ({ffmpeg_reason(exc)})") from None


def video_stream(container: Any, path: Path) -> Any:
    """The input's main video stream (skipping cover art), or a one-line error."""
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VsrError(f"{path}: has no video stream (found: {', '.join(kinds)})")
    best = max(streams, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))
    if not best.codec_context.width or not best.codec_context.height:
        raise VsrError(f"{path}: video stream has no frame size (corrupt or unsupported)")
    return best


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's message without PyAV's errno and file-name decorations."""
    if isinstance(exc, av.error.FFmpegError):
        return str(exc.strerror or exc).strip().rstrip(".")
    return str(exc)
