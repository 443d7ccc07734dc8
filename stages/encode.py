"""The ``pyav`` encoder: frames to a file, with every other stream of the input copied."""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.colour import output_colour, sws_matrix
from vsr.errors import VsrError, WriteError
from vsr.files import fsync_path
from vsr.frame import RANGE_PC, Colour, Frame
from vsr.hookspecs import hookimpl
from vsr.media import IMAGE_SUFFIXES, ffmpeg_reason, open_input, video_stream
from vsr.registry import StageRegister
from vsr.stage import Segment, Stage

# Option names of the encoders whose rate control and speed we set by name.
_CRF_OPTION = {"libx264": "crf", "libx265": "crf", "libsvtav1": "crf", "libaom-av1": "crf", "libvpx-vp9": "crf"}
#: Still-image output: suffix -> (encoder, pixel format for 8-bit frames, for 16-bit frames).
_IMAGE_CODECS = {
    ".png": ("png", "rgb24", "rgb48be"),
    ".tif": ("tiff", "rgb24", "rgb48le"),
    ".tiff": ("tiff", "rgb24", "rgb48le"),
    ".bmp": ("bmp", "bgr24", "bgr24"),
    ".webp": ("libwebp", "yuv420p", "yuv420p"),
    ".jpg": ("mjpeg", "yuvj444p", "yuvj444p"),
    ".jpeg": ("mjpeg", "yuvj444p", "yuvj444p"),
}
_SPEED_OPTION = {
    "libx264": "preset",
    "libx265": "preset",
    "libsvtav1": "preset",
    "libaom-av1": "cpu-used",
    "libvpx-vp9": "cpu-used",
}


@dataclass
class EncodeOptions:
    codec: str = "libx264"
    """Any FFmpeg encoder PyAV knows: libx264, libx265, libsvtav1, ..."""
    crf: int | None = 18
    """Constant-quality level (lower is better); none leaves the encoder's default."""
    speed: str | int | None = "medium"
    """Encoder speed preset (x264/x265 names, SVT-AV1 numbers); none for the default."""
    pix_fmt: str = "yuv420p"
    """Output pixel format; yuv420p10le for 10-bit."""
    tune: str | None = None
    """x264/x265 tune, e.g. animation, film, grain."""
    options: dict[str, str] = field(default_factory=dict)
    """Further encoder options, passed to FFmpeg as they are."""
    copy_streams: bool = True
    """Copy audio, subtitle and attachment streams of the input unchanged."""

    def validate(self) -> str | None:
        try:
            codec = av.Codec(self.codec, "w")
        except (ValueError, av.error.FFmpegError):
            return f"unknown encoder {self.codec!r} (see `ffmpeg -encoders`)"
        if codec.type != "video":
            return f"{self.codec} is not a video encoder"
        try:
            av.VideoFormat(self.pix_fmt)
        except (ValueError, av.error.FFmpegError):
            return f"unknown pixel format {self.pix_fmt!r}"
        return None


class _Remuxer:
    """Copies the input's other streams into the output, interleaved by time."""

    def __init__(self, output: Any, source: Any, video_index: int, log: Any) -> None:
        self.output = output
        self.source = source
        self.map: dict[int, Any] = {}
        supported = output.supported_codecs
        for stream in source.streams:
            if stream.index == video_index or stream.type == "attachment":
                continue
            if stream.type not in ("audio", "subtitle"):
                log.warning(
                    "not copying %s stream #%d: only audio, subtitles and attachments are copied",
                    stream.type,
                    stream.index,
                )
                continue
            name = stream.codec_context.name if stream.codec_context else None
            if name not in supported:
                log.warning(
                    "not copying %s stream #%d (%s): the output container cannot hold it",
                    stream.type,
                    stream.index,
                    name,
                )
                continue
            self.map[stream.index] = output.add_stream_from_template(stream)
        self._copy_attachments(log)
        self.packets = source.demux(*[source.streams[i] for i in self.map]) if self.map else iter(())
        self.pending: Any = None

    def _copy_attachments(self, log: Any) -> None:
        attachments = list(getattr(self.source.streams, "attachments", ()))
        if not attachments:
            return
        if "matroska" not in self.output.format.name:
            log.warning("not copying %d attachment(s): only Matroska outputs hold attachments", len(attachments))
            return
        for att in attachments:
            self.output.add_attachment(att.name, att.mimetype, bytes(att.data))

    def _next(self) -> Any:
        for packet in self.packets:
            if packet.size == 0:  # the demuxer's flushing packets
                continue
            return packet
        return None

    def pump(self, until: float | None) -> None:
        """Mux copied packets up to time ``until`` (seconds; None: all)."""
        while True:
            if self.pending is None:
                self.pending = self._next()
                if self.pending is None:
                    return
            packet = self.pending
            ts = packet.dts if packet.dts is not None else packet.pts
            if until is not None and ts is not None and float(ts * packet.time_base) > until:
                return
            packet.stream = self.map[packet.stream.index]
            self.output.mux(packet)
            self.pending = None


class PyAVEncoder(Stage):
    """Encode with FFmpeg (PyAV): source timestamps, colour tags, streams copied."""

    name = "pyav"
    description = "FFmpeg encoder (PyAV): x264/x265/SVT-AV1/any encoder, keeps timestamps, audio and subtitles"
    Options = EncodeOptions

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        if self.job.final_output.suffix.lower() in IMAGE_SUFFIXES:
            yield from self._write_image(frames)
        else:
            yield from self._write_video(frames)

    def _write_image(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        first = next(iter(frames), None)
        if first is None:
            raise VsrError(f"{self.job.input}: no frame to write")
        codec, pix_fmt_8, pix_fmt_16 = _IMAGE_CODECS[self.job.final_output.suffix.lower()]
        deep = first.pixels.dtype == np.uint16
        pix_fmt = pix_fmt_16 if deep else pix_fmt_8
        image = av.VideoFrame.from_ndarray(first.pixels, format="rgb48le" if deep else "rgb24")
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = first.width, first.height, pix_fmt
        ctx.time_base = Fraction(1, 25)
        if codec == "mjpeg":
            ctx.options = {"qmin": "1", "qmax": "2"}
            ctx.color_range = RANGE_PC
        image = image.reformat(format=pix_fmt)
        try:
            packets = ctx.encode(image) + ctx.encode(None)
            with open(self.job.output, "wb") as fh:
                for packet in packets:
                    fh.write(bytes(packet))
        except (av.error.FFmpegError, OSError) as exc:
            raise VsrError(f"{self.job.final_output}: cannot write image: {ffmpeg_reason(exc)}") from None
        yield first

    def _open_video_stream(self, output: Any, first: Frame) -> tuple[Any, Colour]:
        opts = self.options
        media = self.job.media
        rate = media.frame_rate if media and media.frame_rate else Fraction(25)
        stream = output.add_stream(opts.codec, rate=rate)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = opts.pix_fmt
        stream.time_base = first.time_base
        stream.codec_context.time_base = first.time_base
        if media and media.sample_aspect_ratio:  # anamorphic sources stay anamorphic
            stream.codec_context.sample_aspect_ratio = media.sample_aspect_ratio
        colour = output_colour(first.colour, first.height)
        cc = stream.codec_context
        cc.colorspace, cc.color_range = colour.matrix, colour.range
        cc.color_primaries, cc.color_trc = colour.primaries, colour.transfer
        codec_options = {}
        if opts.crf is not None and opts.codec in _CRF_OPTION:
            codec_options[_CRF_OPTION[opts.codec]] = str(opts.crf)
        if opts.speed is not None and opts.codec in _SPEED_OPTION:
            codec_options[_SPEED_OPTION[opts.codec]] = str(opts.speed)
        if opts.tune:
            codec_options["tune"] = opts.tune
        codec_options.update(opts.options)
        if opts.codec == "libx265":  # x265 prints its settings to stderr unless told not to
            params = codec_options.get("x265-params", "")
            codec_options["x265-params"] = f"log-level=error:{params}" if params else "log-level=error"
        if opts.codec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only
        stream.options = codec_options
        return stream, colour

    @property
    def supports_segments(self) -> bool:
        """Whether :mod:`vsr.run` may ask for resumable segments: an MP4 or QuickTime file must hold the codec."""
        return _segment_suffix(self.options.codec) != ""

    def _open_output(self, path: Path, first: Frame, options: dict[str, str] | None = None) -> _VideoOut:
        try:
            output = av.open(str(path), mode="w", options=options or {})
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise VsrError(f"{self.job.final_output}: cannot create output ({ffmpeg_reason(exc)})") from None
        try:
            stream, colour = self._open_video_stream(output, first)
        except BaseException:
            output.close()
            raise
        return _VideoOut(output, stream, colour, self.options.pix_fmt, first)

    def _write_video(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        if self.job.segment_frames and self.job.work_dir is not None:
            yield from self._write_segments(frames)
            return
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None:
            raise VsrError(f"{self.job.input}: no frame to encode")
        out = self._open_output(self.job.output, first)
        source = None
        try:
            remux = None
            if self.options.copy_streams:
                source, remux = self._remuxer(out.output)
            for frame in itertools.chain([first], iterator):
                _mux(out.output, out.encode(frame), remux)
                yield frame
            _mux(out.output, out.flush(), remux)
            if remux is not None:
                remux.pump(None)
        except av.error.FFmpegError as exc:
            raise VsrError(f"{self.job.final_output}: encoding failed ({ffmpeg_reason(exc)})") from None
        finally:
            if source is not None:
                source.close()
            self._close(out.output)

    def _remuxer(self, output: Any) -> tuple[Any, _Remuxer]:
        source = open_input(self.job.input)
        media = self.job.media
        index = media.video_stream_index if media else video_stream(source, self.job.input).index
        return source, _Remuxer(output, source, index, self.job.log)

    def _close(self, output: Any) -> None:
        try:
            output.close()
        except av.error.FFmpegError as exc:
            raise VsrError(f"{self.job.final_output}: cannot finish output ({ffmpeg_reason(exc)})") from None

    def _write_segments(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Video only, one MP4/QuickTime file per segment, then :meth:`join`.

        These containers keep each packet's pts and dts (B-frames' negative
        dts included) relative to the segment's first dts, exactly; that first
        dts itself goes into the :class:`Segment` record, since their edit
        lists would round it to milliseconds. A segment is synced, renamed to
        its final name and reported to ``job.on_segment`` once complete; an
        unfinished one is deleted.
        """
        job = self.job
        assert job.work_dir is not None
        suffix = _segment_suffix(self.options.codec)
        out: _VideoOut | None = None
        partial = Path()
        number = first_index = count = last_pts = 0
        first_dts: int | None = None

        def write(packets: list[Any]) -> None:
            nonlocal first_dts
            assert out is not None
            for packet in packets:
                if first_dts is None:
                    first_dts = packet.dts if packet.dts is not None else packet.pts
                out.output.mux(packet)

        def finish() -> None:
            assert out is not None and job.work_dir is not None
            write(out.flush())
            self._close(out.output)
            final = job.work_dir / f"seg-{first_index:09d}{suffix}"  # by first frame: unique whatever N
            fsync_path(partial)
            os.replace(partial, final)
            fsync_path(job.work_dir)
            if job.on_segment is not None:
                segment = Segment(number, final, first_index, count, last_pts, int(first_dts or 0), out.stream_tb)
                job.on_segment(segment)

        try:
            for frame in frames:
                if out is None or job.starts_segment(frame.index):
                    if out is not None:
                        finish()
                    number, first_index, count, first_dts = frame.index // job.segment_frames, frame.index, 0, None
                    partial = job.work_dir / f".seg-{first_index:09d}.partial{suffix}"
                    out = self._open_output(partial, frame, {"use_editlist": "0"})
                write(out.encode(frame))
                count, last_pts = count + 1, frame.pts
                yield frame
            if out is not None:
                finish()
                out = None
        except OSError as exc:  # PyAV's errno errors are OSErrors too: a full disk lands here
            raise WriteError(f"{job.final_output}: cannot write segment: {exc.strerror or exc}") from None
        except av.error.FFmpegError as exc:
            raise VsrError(f"{job.final_output}: encoding failed ({ffmpeg_reason(exc)})") from None
        finally:
            if out is not None:  # interrupted or failed mid-segment: nothing of it is kept
                with contextlib.suppress(av.error.FFmpegError, OSError):
                    out.output.close()
                partial.unlink(missing_ok=True)

    def join(self, segments: list[Segment], output: Path) -> None:
        """Mux the segments' video packets, at their original times, with the input's other streams."""
        job = self.job
        try:
            container = av.open(str(output), mode="w")
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise VsrError(f"{job.final_output}: cannot create output ({ffmpeg_reason(exc)})") from None
        source = None
        try:
            with av.open(str(segments[0].path)) as first:
                template = first.streams.video[0]
                # opaque: the codec parameters copied as they are (pixel format, colour, extradata), no
                # codec context needed, so decoder-only codec names (libdav1d for AV1) do not matter
                stream = container.add_stream_from_template(template, opaque=True)
                stream.time_base = segments[0].time_base
            remux = None
            if self.options.copy_streams:
                source, remux = self._remuxer(container)
            for segment in segments:
                with av.open(str(segment.path)) as reader:
                    packets = [p for p in reader.demux(reader.streams.video[0]) if p.size]
                    if not packets:
                        raise VsrError(f"{segment.path}: empty segment")
                    start = packets[0].dts if packets[0].dts is not None else packets[0].pts
                    shift = round(Fraction(segment.first_dts) * segment.time_base / packets[0].time_base) - start
                    for packet in packets:
                        packet.pts = None if packet.pts is None else packet.pts + shift
                        packet.dts = None if packet.dts is None else packet.dts + shift
                        packet.stream = stream
                    _mux(container, packets, remux)
            if remux is not None:
                remux.pump(None)
        except OSError as exc:
            raise WriteError(f"{job.final_output}: cannot write: {exc.strerror or exc}") from None
        except av.error.FFmpegError as exc:
            raise VsrError(f"{job.final_output}: joining the segments failed ({ffmpeg_reason(exc)})") from None
        finally:
            if source is not None:
                source.close()
            self._close(container)


class _VideoOut:
    """An output container with one video stream, and the RGB-to-YUV conversion into it."""

    def __init__(self, output: Any, stream: Any, colour: Colour, pix_fmt: str, first: Frame) -> None:
        self.output, self.stream, self.colour, self.pix_fmt = output, stream, colour, pix_fmt
        self.stream_tb = first.time_base  # the encoder's packets come in the frames' time base
        self.src_format = "rgb48le" if first.pixels.dtype == np.uint16 else "rgb24"
        self.matrix = sws_matrix(colour.matrix)

    def encode(self, frame: Frame) -> list[Any]:
        fmt = "rgb48le" if frame.pixels.dtype == np.uint16 else "rgb24"
        if fmt != self.src_format or (frame.width, frame.height) != (self.stream.width, self.stream.height):
            raise VsrError("frame size or depth changed mid-stream; vsr cannot encode that yet")
        vf = av.VideoFrame.from_ndarray(frame.pixels, format=fmt)
        vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.colour.range)
        vf.pts = frame.pts
        vf.time_base = frame.time_base
        return self.stream.encode(vf)

    def flush(self) -> list[Any]:
        return self.stream.encode(None)


def _mux(output: Any, packets: list[Any], remux: _Remuxer | None) -> None:
    """Mux video packets, copying the other streams' packets up to each one's time first."""
    for packet in packets:
        if remux is not None and packet.dts is not None:
            remux.pump(float(packet.dts * packet.time_base))
        output.mux(packet)


@functools.cache
def _segment_suffix(encoder: str) -> str:
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


@hookimpl
def register_encoders(register: StageRegister) -> None:
    register(PyAVEncoder)
