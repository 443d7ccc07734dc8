"""The ``pyav`` encoder: frames to a file, with every other stream of the input copied."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr import (
    CONTAINER_CODECS,
    IMAGE_CODECS,
    IMAGE_SUFFIXES,
    RANGE_PC,
    Colour,
    Frame,
    Remuxer,
    Segment,
    SegmentedEncoder,
    SegmentTiming,
    SegmentWriter,
    Stage,
    StageRegister,
    UsageError,
    VsrError,
    WriteError,
    check_size,
    container_format,
    copy_description,
    embed_still_tags,
    ffmpeg_reason,
    holds,
    hookimpl,
    mux,
    open_input,
    output_colour,
    resource_failure,
    segment_suffix,
    shown,
    sws_matrix,
    video_stream,
)

# Option names of the encoders whose rate control and speed we set by name.
_CRF_OPTION = {"libx264": "crf", "libx265": "crf", "libsvtav1": "crf", "libaom-av1": "crf", "libvpx-vp9": "crf"}
_SPEED_OPTION = {
    "libx264": "preset",
    "libx265": "preset",
    "libsvtav1": "preset",
    "libaom-av1": "cpu-used",
    "libvpx-vp9": "cpu-used",
}
#: What ``crf`` and ``speed`` may be, per encoder (checked before any model is built).
_CRF_RANGE = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libsvtav1": (1, 63),
    "libaom-av1": (0, 63),
    "libvpx-vp9": (0, 63),
}
_X26X_SPEEDS = "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo".split()
_NUMERIC_SPEED = {"libsvtav1": (-2, 13), "libaom-av1": (0, 9), "libvpx-vp9": (-16, 16)}
_TUNES = {
    "libx264": {"film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"},
    "libx265": {"psnr", "ssim", "grain", "zerolatency", "fastdecode", "animation"},
}
#: Encoder options a preset may pass on (``[encode] options``). A preset is a file people download and share: no
#: option that names a file or another output (stats, passlogfile, pass flags, format overrides) is allowed.
ALLOWED_OPTIONS = frozenset(
    "profile level qp b minrate maxrate bufsize g keyint_min bf refs sc_threshold aq-mode aq-strength psy psy-rd "
    "deblock rc-lookahead threads x264-params x265-params svtav1-params row-mt tile-columns tile-rows "
    "lag-in-frames deadline slices slicecrc coder context".split()
)
#: Keys of x264-params/x265-params/svtav1-params that read or write files.
_FILE_PARAMS = frozenset(
    "dump-yuv stats pass qpfile tcfile-in tcfile-out input-csv csv csv-log-level analysis-save analysis-load "
    "analysis-reuse-file recon zonefile dolby-vision-rpu hdr10-opt-file fgs-table stat-file input-stat-file "
    "output-stat-file pass1 pass2 passlogfile log-file".split()
)


def _option_problem(key: str, value: str) -> str | None:
    """Why an ``[encode] options`` entry is refused, or None."""
    if key not in ALLOWED_OPTIONS:
        allowed = ", ".join(sorted(ALLOWED_OPTIONS))
        return f"encoder option {key!r} is not allowed in presets (allowed: {allowed})"
    if key.endswith("-params"):
        for item in str(value).split(":"):
            name = item.partition("=")[0].strip().lower()
            if name in _FILE_PARAMS:
                return f"encoder option {key} may not carry {name!r}: it names a file"
    return None


@dataclass
class EncodeOptions:
    codec: str = "libx264"
    """Any FFmpeg encoder PyAV knows: libx264, libx265, libsvtav1, ..."""
    crf: int | None = 18
    """Constant-quality level (lower is better); none leaves the encoder's default."""
    speed: str | int | None = "medium"
    """Encoder speed preset (x264/x265 names; SVT-AV1, AV1 and VP9 numbers, where "medium" means the encoder's
    default); none for the default."""
    pix_fmt: str = "yuv420p"
    """Output pixel format; yuv420p10le for 10-bit."""
    tune: str | None = None
    """x264/x265 tune, e.g. animation, film, grain."""
    options: dict[str, str] = field(default_factory=dict)
    """Further encoder options (an allow-list: ALLOWED_OPTIONS; none that names a file), passed to FFmpeg."""
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
        low, high = _CRF_RANGE.get(self.codec, (0, 63))
        if self.crf is not None and not low <= self.crf <= high:
            return f"crf {self.crf} is outside {low}..{high} for {self.codec}"
        if self.codec in ("libx264", "libx265") and self.speed is not None and self.speed not in _X26X_SPEEDS:
            return f"speed {self.speed!r} is not one of {self.codec}'s: {', '.join(_X26X_SPEEDS)}"
        if self.codec in _NUMERIC_SPEED and self.speed not in (None, "medium"):  # medium: the encoder's default
            low, high = _NUMERIC_SPEED[self.codec]
            if type(self.speed) is not int or not low <= self.speed <= high:
                return f"speed for {self.codec} is a number from {low} to {high}, not {self.speed!r}"
        if self.tune is not None and self.codec in _TUNES and self.tune not in _TUNES[self.codec]:
            return f"tune {self.tune!r} is not one of {self.codec}'s: {', '.join(sorted(_TUNES[self.codec]))}"
        for key, value in self.options.items():
            if (problem := _option_problem(str(key), str(value))) is not None:
                return problem
        return None


@contextlib.contextmanager
def _writing(output: Path, what: str) -> Iterator[None]:
    """FFmpeg's failures as one line: the destination's (a full disk) as WriteError, the rest as VsrError.

    PyAV's errno errors are OSErrors too, so a full disk lands in the first branch.
    """
    try:
        yield
    except OSError as exc:
        raise WriteError(f"{shown(output)}: cannot write: {exc.strerror or exc}") from None
    except av.error.FFmpegError as exc:
        kind = WriteError if resource_failure(exc) else VsrError
        raise kind(f"{shown(output)}: {what} failed ({ffmpeg_reason(exc)})") from None


#: x264/x265 speed names -> libvpx-vp9's cpu-used: 4-5 with row-mt keeps VP9 at a useful throughput.
_VP9_SPEED = {"ultrafast": 5, "superfast": 5, "veryfast": 5, "faster": 5, "fast": 4, "medium": 4}


def for_container_codec(opts: EncodeOptions, codec: str) -> EncodeOptions:
    """``opts`` carried over to ``codec`` (the codec a container holds where it cannot hold the preset's).

    Quality and speed keep their meaning: CRF on x264's scale maps to VP9's (18 -> 31, the level libvpx's
    own guide gives for visually lossless HD); x264/x265 tunes and params have no VP9 counterpart and go.
    """
    if codec != "libvpx-vp9":
        return replace(opts, codec=codec, tune=None, options={})
    crf = None if opts.crf is None else max(0, min(63, round(opts.crf * 1.4 + 6)))
    speed = _VP9_SPEED.get(str(opts.speed), 4)
    kept = {k: v for k, v in opts.options.items() if not k.endswith("-params")}
    return replace(opts, codec=codec, crf=crf, speed=speed, tune=None, options={"row-mt": "1", "b": "0", **kept})


class PyAVEncoder(Stage, SegmentedEncoder):
    """Encode with FFmpeg (PyAV): source timestamps, colour tags, streams copied; resumable segments."""

    name = "pyav"
    description = "FFmpeg encoder (PyAV): x264/x265/SVT-AV1/any encoder, keeps timestamps, audio and subtitles"
    Options = EncodeOptions

    @functools.cached_property
    def settings(self) -> EncodeOptions:
        """The options for this output: the preset's, or the container's own codec where it cannot hold that.

        Raises:
            UsageError: an unknown suffix; a codec the container cannot hold that the command line named
                (``--set encode.codec``), or that no codec of the container's replaces.
        """
        opts, output = self.options, self.job.final_output
        if not output.name or output.suffix.lower() in IMAGE_SUFFIXES:
            return opts
        fmt = container_format(output)
        if holds(fmt, opts.codec):
            return opts
        fitting = CONTAINER_CODECS.get(fmt)
        if "codec" in self.job.pinned or fitting is None:
            instead = f"choose a codec it holds (--set encode.codec={fitting[0]})" if fitting else "choose another"
            raise UsageError(
                f"{shown(output)}: the {fmt} container cannot hold {opts.codec}; {instead}, or another suffix "
                "(.mkv holds any codec)"
            )
        return for_container_codec(opts, fitting[0])

    def check_output(self, width: int, height: int) -> None:
        """Refuse a container, codec or size the encoder cannot write; warn about one beyond its standard's top
        level."""
        opts = self.settings
        if opts.codec != self.options.codec:
            fmt = container_format(self.job.final_output)
            self.job.log.info(
                "%s holds no %s: encoding %s (crf %s, speed %s) instead",
                fmt, self.options.codec, opts.codec, opts.crf, opts.speed,
            )  # fmt: skip
        check_size(opts.codec, opts.pix_fmt, self._codec_options(), width, height, self.job.log)

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        if self.job.final_output.suffix.lower() in IMAGE_SUFFIXES:
            yield from self._write_image(frames)
        else:
            yield from self._write_video(frames)

    def _write_image(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        first = next(iter(frames), None)
        if first is None:
            raise VsrError(f"{self.job.input}: no frame to write")
        codec, pix_fmt_8, pix_fmt_16 = IMAGE_CODECS[self.job.final_output.suffix.lower()]
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
            data = b"".join(bytes(packet) for packet in ctx.encode(image) + ctx.encode(None))
            still = self.job.media.still if self.job.media is not None else None
            if still is not None:  # the ICC profile and EXIF go along, the orientation now 1
                data = embed_still_tags(data, self.job.final_output.suffix.lower(), still)
            with open(self.job.output, "wb") as fh:
                fh.write(data)
        except (av.error.FFmpegError, OSError) as exc:
            kind = WriteError if resource_failure(exc) else VsrError
            raise kind(f"{shown(self.job.final_output)}: cannot write image: {ffmpeg_reason(exc)}") from None
        yield first

    def _open_video_stream(self, output: Any, first: Frame) -> tuple[Any, Colour]:
        opts = self.settings
        media = self.job.media
        rate = media.frame_rate if media and media.frame_rate else Fraction(25)
        stream = output.add_stream(opts.codec, rate=rate)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = opts.pix_fmt
        stream.time_base = first.time_base
        stream.codec_context.time_base = first.time_base
        if media and media.sample_aspect_ratio:  # anamorphic sources stay anamorphic
            stream.codec_context.sample_aspect_ratio = media.sample_aspect_ratio
        if media and media.display_matrix:  # a phone clip plays turned as its source did
            stream.set_display_matrix(list(media.display_matrix))
        colour = output_colour(first.colour, first.height)
        cc = stream.codec_context
        cc.colorspace, cc.color_range = colour.matrix, colour.range
        cc.color_primaries, cc.color_trc = colour.primaries, colour.transfer
        stream.options = self._codec_options()
        return stream, colour

    def _codec_options(self) -> dict[str, str]:
        opts = self.settings
        codec_options = {}
        if opts.crf is not None and opts.codec in _CRF_OPTION:
            codec_options[_CRF_OPTION[opts.codec]] = str(opts.crf)
        numeric_default = opts.codec in _NUMERIC_SPEED and opts.speed == "medium"  # "medium": the encoder's own
        if opts.speed is not None and opts.codec in _SPEED_OPTION and not numeric_default:
            codec_options[_SPEED_OPTION[opts.codec]] = str(opts.speed)
        if opts.tune:
            codec_options["tune"] = opts.tune
        codec_options.update(opts.options)
        if opts.codec == "libx265":  # x265 prints its settings to stderr unless told not to
            params = codec_options.get("x265-params", "")
            codec_options["x265-params"] = f"log-level=error:{params}" if params else "log-level=error"
        if opts.codec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only
        return codec_options

    def _create(self, path: Path, options: dict[str, str] | None = None) -> Any:
        """An output container at ``path``; final outputs (not segments) get ``job.metadata`` as tags."""
        final = path == self.job.output
        options = dict(options or {})
        cover_art = self.job.media is not None and self.job.media.cover_art
        if final and path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            # the index (moov) in front, so browsers and media servers play before the end has arrived;
            # FFmpeg moves the data up inside the same file when it finishes: no second copy of it
            flags = ["faststart"]
            if self.job.metadata and not cover_art:
                # MP4/QuickTime keep only known keys otherwise; FFmpeg then writes no cover art, which wins
                flags.append("use_metadata_tags")
            options["movflags"] = "+" + "+".join(flags)
        try:
            output = av.open(str(path), mode="w", options=options)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            kind = WriteError if resource_failure(exc) else VsrError
            raise kind(f"{shown(self.job.final_output)}: cannot create output ({ffmpeg_reason(exc)})") from None
        if final:
            output.metadata.update(self.job.metadata)
        return output

    def _open_output(self, path: Path, first: Frame, options: dict[str, str] | None = None) -> _VideoOut:
        output = self._create(path, options)
        try:
            stream, colour = self._open_video_stream(output, first)
        except BaseException:
            output.close()
            raise
        offset = self.job.media.start_offset if self.job.media else Fraction(0)
        return _VideoOut(output, stream, colour, self.settings.pix_fmt, first, round(offset / first.time_base))

    def _write_video(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None:
            raise VsrError(f"{self.job.input}: no frame to encode")
        out = self._open_output(self.job.output, first)
        source = None
        try:
            with _writing(self.job.final_output, "encoding"):
                source, remux = self._source(out.output, out.stream)
                for frame in itertools.chain([first], iterator):
                    mux(out.output, out.encode(frame), remux)
                    yield frame
                mux(out.output, out.flush(), remux)
                if remux is not None:
                    remux.pump(None)
        finally:
            if source is not None:
                source.close()
            self._close(out.output)

    def _source(self, output: Any, video: Any) -> tuple[Any, Remuxer | None]:
        """The input, opened again: its description copied into ``output``, and its other streams' remuxer."""
        source = open_input(self.job.input)
        media = self.job.media
        index = media.video_stream_index if media else video_stream(source, self.job.input).index
        copy_description(source, output, source.streams[index], video)
        output.metadata.update(self.job.metadata)  # vsr's own tag wins over a copied one
        if not self.settings.copy_streams:
            return source, None
        offset = media.start_offset if media else Fraction(0)
        audio = CONTAINER_CODECS.get(output.format.name, (None, None))[1]  # WebM: Opus for audio it cannot hold
        return source, Remuxer(output, source, index, self.job.log, offset, audio)

    def _close(self, output: Any) -> None:
        try:
            output.close()
        except (av.error.FFmpegError, OSError) as exc:
            kind = WriteError if resource_failure(exc) else VsrError  # a full disk keeps the finished segments
            raise kind(f"{shown(self.job.final_output)}: cannot finish output ({ffmpeg_reason(exc)})") from None

    # === Segments (vsr.segments.SegmentedEncoder) ===

    def segment_suffix(self) -> str:
        """``.mp4`` or ``.mov``, whichever holds the codec (MP4 first: QuickTime refuses AV1); ``""``: neither."""
        return segment_suffix(self.settings.codec)

    def open_segment(self, path: Path, first: Frame) -> SegmentWriter:
        """MP4/QuickTime keep each packet's pts and dts (B-frames' negative dts included) exactly, relative to
        the first dts, which :class:`_Segment` reports (their edit lists would round it to milliseconds)."""
        return _Segment(self, self._open_output(path, first, {"use_editlist": "0"}))

    def join(self, segments: Sequence[Segment], output: Path) -> None:
        """Mux the segments' video packets, at their original times, with the input's other streams."""
        job = self.job
        container = self._create(output)
        source = None
        try:
            with _writing(job.final_output, "joining the segments"):
                with av.open(str(segments[0].path)) as first:
                    template = first.streams.video[0]
                    # opaque: the codec parameters copied as they are (pixel format, colour, extradata), no
                    # codec context needed, so decoder-only codec names (libdav1d for AV1) do not matter
                    stream = container.add_stream_from_template(template, opaque=True)
                    stream.time_base = segments[0].timing.time_base
                    if job.media and job.media.display_matrix:
                        stream.set_display_matrix(list(job.media.display_matrix))
                source, remux = self._source(container, stream)
                for segment in segments:
                    mux(container, _shifted(segment, stream), remux)
                if remux is not None:
                    remux.pump(None)
        finally:
            if source is not None:
                source.close()
            self._close(container)


def _shifted(segment: Segment, stream: Any) -> list[Any]:
    """A segment's video packets, moved back to their original times and bound for ``stream``."""
    with av.open(str(segment.path)) as reader:
        packets = [p for p in reader.demux(reader.streams.video[0]) if p.size]
    if not packets:
        raise VsrError(f"{segment.path}: empty segment")
    start = packets[0].dts if packets[0].dts is not None else packets[0].pts
    shift = round(Fraction(segment.timing.first_dts) * segment.timing.time_base / packets[0].time_base) - start
    for packet in packets:
        packet.pts = None if packet.pts is None else packet.pts + shift
        packet.dts = None if packet.dts is None else packet.dts + shift
        packet.stream = stream
    return packets


class _Segment(SegmentWriter):
    """One segment file being encoded; its first packet's dts is kept for the join."""

    def __init__(self, encoder: PyAVEncoder, out: _VideoOut) -> None:
        self.encoder, self.out = encoder, out
        self.first_dts: int | None = None

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            if self.first_dts is None:
                self.first_dts = packet.dts if packet.dts is not None else packet.pts
            self.out.output.mux(packet)

    def write(self, frame: Frame) -> None:
        with _writing(self.encoder.job.final_output, "encoding"):
            self._mux(self.out.encode(frame))

    def close(self) -> SegmentTiming:
        with _writing(self.encoder.job.final_output, "encoding"):
            self._mux(self.out.flush())
        self.encoder._close(self.out.output)
        return SegmentTiming(int(self.first_dts or 0), self.out.stream_tb)

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self.out.output.close()


class _VideoOut:
    """An output container with one video stream, and the RGB-to-YUV conversion into it."""

    def __init__(self, output: Any, stream: Any, colour: Colour, pix_fmt: str, first: Frame, shift: int) -> None:
        self.output, self.stream, self.colour, self.pix_fmt = output, stream, colour, pix_fmt
        self.shift = shift  # ticks every pts moves back: outputs start at 0 (see MediaInfo.start_offset)
        self.stream_tb = first.time_base  # the encoder's packets come in the frames' time base
        self.src_format = "rgb48le" if first.pixels.dtype == np.uint16 else "rgb24"
        self.matrix = sws_matrix(colour.matrix)

    def encode(self, frame: Frame) -> list[Any]:
        fmt = "rgb48le" if frame.pixels.dtype == np.uint16 else "rgb24"
        if fmt != self.src_format or (frame.width, frame.height) != (self.stream.width, self.stream.height):
            raise VsrError("frame size or depth changed mid-stream; vsr cannot encode that yet")
        vf = av.VideoFrame.from_ndarray(frame.pixels, format=fmt)
        vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.colour.range)
        vf.pts = None if frame.pts is None else frame.pts - self.shift
        vf.time_base = frame.time_base
        return self.stream.encode(vf)

    def flush(self) -> list[Any]:
        return self.stream.encode(None)


@hookimpl
def register_encoders(register: StageRegister) -> None:
    register(PyAVEncoder)
