"""The ``pyav`` encoder: frames to a file, with every other stream of the input copied."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import av.filter
import numpy as np

from stages.encode_options import (
    ALPHA_FORMATS,
    ALPHA_OPTIONS,
    ANIMATED_STILLS,
    CRF_OPTION,
    DEEPER,
    HDR_PARAMS,
    KEEP_ALPHA,
    LOOP_FOREVER,
    NAMED_SPEEDS,
    SPEED_OPTION,
    X26X_SPEEDS,
    EncodeOptions,
    for_container_codec,
    keeps_alpha,
    pix_fmt_bits,
    to_x265,
)
from vsr import (
    CONTAINER_CODECS,
    IMAGE_CODECS,
    IMAGE_SUFFIXES,
    RANGE_PC,
    TRC_PQ,
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
    has_alpha,
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

#: SVT-AV1 reads its log level once, the first time it is opened (the destination check may be that time).
os.environ.setdefault("SVT_LOG", "1")  # errors only


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


class PyAVEncoder(Stage, SegmentedEncoder):
    """Encode with FFmpeg (PyAV): source timestamps, colour tags, streams copied; resumable segments."""

    name = "pyav"
    description = "FFmpeg encoder (PyAV): x264/x265/SVT-AV1/any encoder, keeps timestamps, audio and subtitles"
    Options = EncodeOptions

    @property
    def _still(self) -> bool:
        """Whether the output is a still image (a .webp or .png of an animation or a video is an animated one)."""
        media = self.job.media
        moving = media is not None and not media.is_image and self.job.final_output.suffix.lower() in ANIMATED_STILLS
        return self.job.final_output.suffix.lower() in IMAGE_SUFFIXES and not moving

    @property
    def _format(self) -> str:
        """The output's container: the one its suffix names (an animation's .png is APNG's)."""
        output = self.job.final_output
        return "apng" if output.suffix.lower() == ".png" and not self._still else container_format(output)

    @functools.cached_property
    def settings(self) -> EncodeOptions:
        """The options for this output: the preset's, or the container's own codec where it cannot hold that.

        Raises:
            UsageError: an unknown suffix; a codec the container cannot hold that the command line named
                (``--set encode.codec``), or that no codec of the container's replaces.
        """
        opts, output = self.options, self.job.final_output
        if not output.name or self._still:
            return opts
        fmt = self._format
        if not holds(fmt, opts.codec):
            fitting = CONTAINER_CODECS.get(fmt)
            if "codec" in self.job.pinned or fitting is None:
                instead = f"choose a codec it holds (--set encode.codec={fitting[0]})" if fitting else "choose another"
                raise UsageError(
                    f"{shown(output)}: the {fmt} container cannot hold {opts.codec}; {instead}, or another suffix "
                    "(.mkv holds any codec)"
                )
            opts = for_container_codec(opts, fitting[0])
        return self._deep(self._transparent(opts, fmt), fmt)

    def _transparent(self, opts: EncodeOptions, fmt: str) -> EncodeOptions:
        """``opts`` with a pixel format (and, for ``alpha = "keep"``, a codec) that holds a source's alpha."""
        media = self.job.media
        if media is None or not media.alpha or opts.alpha == "drop" or has_alpha(opts.pix_fmt):
            return opts
        if opts.codec not in ALPHA_FORMATS and opts.alpha == "keep":
            codec = KEEP_ALPHA.get(fmt)
            if codec is None or "codec" in self.job.pinned:
                holder = f"no codec of the {fmt} container holds" if codec is None else f"{opts.codec} cannot hold"
                raise UsageError(
                    f"{shown(self.job.input)} has transparency, which {holder} (encode.alpha = keep): "
                    "write .mov (ProRes 4444), .webm or .mkv (VP9), or --set encode.alpha=drop"
                )
            opts = for_container_codec(opts, codec)
        if opts.codec not in ALPHA_FORMATS:
            return opts  # auto: dropped, with a warning (check_output)
        options = {**opts.options, **ALPHA_OPTIONS.get(opts.codec, {})}
        return replace(opts, pix_fmt=ALPHA_FORMATS[opts.codec], options=options)

    def _deep(self, opts: EncodeOptions, fmt: str) -> EncodeOptions:
        """``opts`` at 10 bits for a source deeper than 8 (x264 becomes x265: High 10 plays in too few players),
        unless the command line named the pixel format."""
        media = self.job.media
        if media is None or media.bit_depth <= 8 or pix_fmt_bits(opts.pix_fmt) > 8 or "pix_fmt" in self.job.pinned:
            return opts
        if opts.codec == "libx264" and "codec" not in self.job.pinned and holds(fmt, "libx265"):
            opts = to_x265(opts)
        deep = opts.pix_fmt.replace("p", "p10le", 1) if opts.pix_fmt.endswith("p") else DEEPER.get(opts.pix_fmt, "")
        formats = {f.name for f in av.Codec(opts.codec, "w").video_formats or ()}
        return replace(opts, pix_fmt=deep) if deep in formats else opts

    def check_output(self, width: int, height: int) -> None:
        """Refuse a container, codec or size the encoder cannot write; warn about one beyond its standard's top
        level."""
        if self._still:
            self._check_image_alpha()
            return
        opts, media, log, name = self.settings, self.job.media, self.job.log, shown(self.job.input.name)
        fmt = self._format
        if opts.codec != self.options.codec:
            knobs = ", ".join(f"{k} {v}" for k, v in (("crf", opts.crf), ("speed", opts.speed)) if v is not None)
            log.info("%s: encoding %s%s instead", self._why_codec(fmt), opts.codec, f" ({knobs})" if knobs else "")
        if media is not None:
            if media.alpha and not keeps_alpha(opts) and opts.alpha != "drop":
                log.warning(
                    "%s has transparency (alpha), which %s in %s cannot hold: the output is opaque; --set "
                    "encode.alpha=keep writes ProRes 4444 in .mov or VP9 in .webm/.mkv", name, opts.codec, fmt
                )  # fmt: skip
            if media.bit_depth > 8 and pix_fmt_bits(opts.pix_fmt) <= 8:
                log.warning("%s is %d-bit; encoding %s at 8 bits (%s) may show banding", name, media.bit_depth,
                            opts.codec, opts.pix_fmt)  # fmt: skip
            hdr = media.hdr
            if hdr is not None and hdr.static and media.colour.transfer == TRC_PQ and opts.codec not in HDR_PARAMS:
                log.warning("%s: %s cannot carry HDR10's mastering display and light level metadata; libx265 and "
                            "libsvtav1 can", name, opts.codec)  # fmt: skip
            if hdr is not None and hdr.dynamic:
                log.warning("%s carries %s dynamic metadata, which vsr drops: the output is %s", name,
                            " and ".join(hdr.dynamic), "HDR10" if hdr.static else "its base layer")  # fmt: skip
        formats = [f.name for f in av.Codec(opts.codec, "w").video_formats or ()]
        if formats and opts.pix_fmt not in formats:
            raise UsageError(
                f"{opts.codec} cannot write pixel format {opts.pix_fmt} (it writes {', '.join(formats)}); "
                "choose one of those with --set encode.pix_fmt, or another codec"
            )
        check_size(opts.codec, opts.pix_fmt, self._codec_options(), width, height, self.job.log)

    def _why_codec(self, fmt: str) -> str:
        """Why :attr:`settings` chose another codec than the preset's."""
        media = self.job.media
        if not holds(fmt, self.options.codec):
            return f"{fmt} holds no {self.options.codec}"
        if media is not None and media.alpha and keeps_alpha(self.settings):
            return f"{self.options.codec} holds no transparency (encode.alpha = keep)"
        bits = media.bit_depth if media else 10
        return f"the source is {bits}-bit and {self.options.codec} at 10 bits plays in few players"

    def _check_image_alpha(self) -> None:
        """Warn that a still format drops a source's transparency; refuse it for ``alpha = "keep"``."""
        media, opts, suffix = self.job.media, self.options, self.job.final_output.suffix
        if media is None or not media.alpha or opts.alpha == "drop" or IMAGE_CODECS[suffix.lower()][3] is not None:
            return
        if opts.alpha == "keep":
            raise UsageError(
                f"{shown(self.job.input)} has transparency, which {suffix} cannot hold (encode.alpha = keep): "
                "write .png, .tif or .webp, or --set encode.alpha=drop"
            )
        name = shown(self.job.input.name)
        self.job.log.warning("%s has transparency (alpha), which %s cannot hold: the output is opaque", name, suffix)

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        if self._still:
            yield from self._write_image(frames)
        else:
            yield from self._write_video(frames)

    def _write_image(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        first = next(iter(frames), None)
        if first is None:
            raise VsrError(f"{self.job.input}: no frame to write")
        codec, rgb8, rgb16, rgba8, rgba16 = IMAGE_CODECS[self.job.final_output.suffix.lower()]
        deep = first.pixels.dtype == np.uint16
        transparent = first.alpha is not None and rgba8 is not None and self.options.alpha != "drop"
        pix_fmt = str((rgba16 if deep else rgba8) if transparent else (rgb16 if deep else rgb8))
        image = rgb_frame(first, transparent)
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = first.width, first.height, pix_fmt
        ctx.time_base = Fraction(1, 25)
        quality = self.options.quality
        if codec == "mjpeg":
            qscale = str(1 + round((100 - quality) * 30 / 99))  # 100 -> 1, 95 -> 2, 75 -> 9, 1 -> 31
            ctx.options = {"qmin": qscale, "qmax": qscale}
            ctx.color_range = RANGE_PC
        elif codec == "libwebp":
            ctx.options = {"quality": str(quality)}
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
        if output.format.name in ("mp4", "mov") and stream.codec_context.codec.canonical_name == "hevc":
            stream.codec_tag = "hvc1"  # what Apple's players (Safari, QuickTime) read; FFmpeg writes hev1
        return stream, colour

    def _codec_options(self) -> dict[str, str]:
        opts = self.settings
        codec_options = {}
        if opts.crf is not None and opts.codec in CRF_OPTION:
            codec_options[CRF_OPTION[opts.codec]] = str(opts.crf)
        speed = (
            NAMED_SPEEDS[opts.codec].get(str(opts.speed))
            if opts.speed in X26X_SPEEDS and opts.codec in NAMED_SPEEDS
            else opts.speed
        )
        if speed is not None and opts.codec in SPEED_OPTION:
            codec_options[SPEED_OPTION[opts.codec]] = str(speed)
        if opts.tune:
            codec_options["tune"] = opts.tune
        codec_options.update(opts.options)
        media = self.job.media
        hdr = media.hdr if media is not None and media.colour.transfer == TRC_PQ else None
        if hdr is not None and hdr.static and opts.codec in HDR_PARAMS:  # HDR10's static metadata, in the stream
            key = HDR_PARAMS[opts.codec]
            extra = hdr.x265_params() if opts.codec == "libx265" else hdr.svtav1_params()
            codec_options[key] = ":".join(filter(None, [codec_options.get(key, ""), *extra]))
        if opts.codec == "libx265":  # x265 prints its settings to stderr unless told not to
            params = codec_options.get("x265-params", "")
            codec_options["x265-params"] = f"log-level=error:{params}" if params else "log-level=error"
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
        fmt = self._format if final else None  # segments: MP4/MOV, from their suffix
        if fmt is not None:
            options.update(LOOP_FOREVER.get(fmt, {}))
        try:
            output = av.open(str(path), mode="w", options=options, format="apng" if fmt == "apng" else None)
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
        opts, media = self.settings, self.job.media
        alpha = keeps_alpha(opts) and (opts.codec != "gif" or (media is not None and media.alpha))
        return _VideoOut(output, stream, colour, opts.pix_fmt, first, round(offset / first.time_base), alpha)

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
        if not keeps_alpha(self.settings) or (media is not None and not media.alpha):
            for key in [k for k in video.metadata if k.lower() == "alpha_mode"]:  # Matroska would say "alpha"
                del video.metadata[key]
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
        """``.mp4`` or ``.mov``, whichever holds the codec (MP4 first: QuickTime refuses AV1); ``""``: neither.

        VP8/VP9's alpha travels beside the picture (Matroska's block additions), which MP4 drops: such an
        output is written in one go, without segments.
        """
        opts = self.settings
        if opts.codec in ("libvpx", "libvpx-vp9") and has_alpha(opts.pix_fmt):
            return ""
        return segment_suffix(opts.codec)

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
                    if container.format.name in ("mov", "mp4"):  # ProRes' tag is its profile (ap4h: 4444, alpha)
                        stream.codec_tag = template.codec_tag
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

    def __init__(
        self, output: Any, stream: Any, colour: Colour, pix_fmt: str, first: Frame, shift: int, alpha: bool
    ) -> None:
        self.output, self.stream, self.colour, self.pix_fmt = output, stream, colour, pix_fmt
        self.shift = shift  # ticks every pts moves back: outputs start at 0 (see MediaInfo.start_offset)
        self.stream_tb = first.time_base  # the encoder's packets come in the frames' time base
        self.src_format = "rgb48le" if first.pixels.dtype == np.uint16 else "rgb24"
        self.matrix = sws_matrix(colour.matrix)
        self.alpha = alpha
        self.palette = _Palette(first, alpha) if pix_fmt == "pal8" else None
        self.durations: dict[int, int] = {}  # pts -> the frame's own duration, until its packet is out

    def encode(self, frame: Frame) -> list[Any]:
        fmt = "rgb48le" if frame.pixels.dtype == np.uint16 else "rgb24"
        if fmt != self.src_format or (frame.width, frame.height) != (self.stream.width, self.stream.height):
            raise VsrError("frame size or depth changed mid-stream; vsr cannot encode that yet")
        vf = rgb_frame(frame, self.alpha)
        if self.palette is None:
            vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.colour.range)
        vf.pts = None if frame.pts is None else frame.pts - self.shift
        vf.time_base = frame.time_base
        if frame.duration and vf.pts is not None:
            vf.duration = frame.duration
            self.durations[vf.pts] = frame.duration
        if self.palette is not None:
            return self._timed([p for paletted in self.palette.push(vf) for p in self.stream.encode(paletted)])
        return self._timed(self.stream.encode(vf))

    def flush(self) -> list[Any]:
        rest = [p for paletted in self.palette.push(None) for p in self.stream.encode(paletted)] if self.palette else []
        return self._timed(rest + self.stream.encode(None))

    def _timed(self, packets: list[Any]) -> list[Any]:
        """``packets`` with their frames' durations (muxers give an animation's last frame the one its packet
        says, else one of the average rate's)."""
        for packet in packets:
            duration = self.durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration:
                packet.duration = duration
        return packets


class _Palette:
    """RGB(A) frames to GIF's 256 colours, a palette made for each frame (FFmpeg's palettegen and paletteuse),
    with one entry for transparency where the source has it."""

    def __init__(self, first: Frame, alpha: bool) -> None:
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=first.width, height=first.height, format="rgba", time_base=first.time_base)
        split = self.graph.add("split")
        make = self.graph.add("palettegen", f"stats_mode=single:reserve_transparent={int(alpha)}")
        use = self.graph.add("paletteuse", "new=1:alpha_threshold=128")
        sink = self.graph.add("buffersink")
        source.link_to(split)
        split.link_to(make, 0, 0)
        split.link_to(use, 1, 0)
        make.link_to(use, 0, 1)
        use.link_to(sink)
        self.graph.configure()
        self.durations: list[int] = []  # of the frames pushed and not yet out, in order

    def push(self, frame: Any) -> list[Any]:
        """The paletted frames ready after ``frame`` (None: the end), with their durations."""
        if frame is not None:
            self.durations.append(frame.duration)
            if frame.format.name != "rgba":
                pts, time_base, duration = frame.pts, frame.time_base, frame.duration
                frame = frame.reformat(format="rgba")
                frame.pts, frame.time_base, frame.duration = pts, time_base, duration
        self.graph.vpush(frame)
        out = []
        while True:
            try:
                paletted = self.graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            paletted.duration = self.durations.pop(0) if self.durations else 0
            out.append(paletted)


def rgb_frame(frame: Frame, alpha: bool) -> Any:
    """``frame``'s pixels as a PyAV frame: RGB, or RGBA with its alpha plane (opaque where it has none)."""
    deep = frame.pixels.dtype == np.uint16
    if not alpha:
        return av.VideoFrame.from_ndarray(frame.pixels, format="rgb48le" if deep else "rgb24")
    dtype = frame.pixels.dtype
    plane = frame.alpha if frame.alpha is not None else np.full(frame.pixels.shape[:2], np.iinfo(dtype).max, dtype)
    rgba = np.dstack([frame.pixels, plane.astype(dtype, copy=False)])
    return av.VideoFrame.from_ndarray(rgba, format="rgba64le" if deep else "rgba")


@hookimpl
def register_encoders(register: StageRegister) -> None:
    register(PyAVEncoder)
