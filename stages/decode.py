"""The ``pyav`` decoder: any video or still image FFmpeg reads, as RGB frames."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

import av
import av.error
import av.filter
import numpy as np

from vsr import (
    IMAGE_FORMATS,
    Animation,
    Colour,
    Frame,
    HdrMetadata,
    MediaInfo,
    Stage,
    StageRegister,
    VsrError,
    animated_webp,
    ffmpeg_reason,
    has_alpha,
    hookimpl,
    open_input,
    read_hdr,
    read_still_tags,
    to_rgba,
    upright,
    video_stream,
    webp_frames,
)


@dataclass
class DecodeOptions:
    threads: int = 0
    """Decoder threads; 0 lets FFmpeg choose."""
    thread_type: Literal["AUTO", "FRAME", "SLICE", "NONE"] = "AUTO"
    """FFmpeg's threading mode."""
    deinterlace: Literal["auto", "frame", "field", "off"] = "auto"
    """Interlaced sources through FFmpeg's bwdif: "auto" at frame rate when the stream or its frames say
    interlaced; "frame"/"field" (one frame per field: double rate) always; "off" never."""
    video_track: int | None = None
    """Which video track to upscale, counted from 0 (ffmpeg's -map 0:v:N); none: the default one, else the first."""

    def validate(self) -> str | None:
        if self.video_track is not None and self.video_track < 0:
            return "video_track must be >= 0"
        return "threads must be >= 0" if self.threads < 0 else None


def _bit_depth(pix_fmt: str | None) -> int:
    if not pix_fmt:
        return 8
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return 8
    return max((c.bits for c in fmt.components), default=8)


class PyAVDecoder(Stage):
    """Decode with FFmpeg (PyAV), converting to RGB with the source's own matrix and range."""

    name = "pyav"
    description = "FFmpeg decoder (PyAV): videos and still images, 8- to 16-bit, colour-matrix aware"
    Options = DecodeOptions

    def probe(self) -> MediaInfo:
        path = self.job.input
        if (animation := animated_webp(path)) is not None:
            return _animation_info(animation)
        with open_input(path) as container:
            stream = video_stream(container, path, self.options.video_track)
            cc = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate
            duration = None
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            frames = stream.frames or (round(duration * rate) if duration and rate else None)
            fmt_name = container.format.name.split(",")[0]
            first = _first_frame(container, stream)
            mode = self._deinterlacing(stream, first.interlaced)
            if mode:
                order = {2: "top field first", 3: "bottom field first"}.get(int(cc.field_order or 0), "flagged frames")
                self.job.log.info("interlaced source (%s): deinterlacing with bwdif at %s rate", order, mode)
            if mode == "field":  # one frame per field
                rate, frames = (rate * 2 if rate else rate), (frames * 2 if frames else frames)
            still = read_still_tags(path) if fmt_name in IMAGE_FORMATS else None
            if still is not None and still.orientation != 1:
                self.job.log.info("EXIF orientation %d: the picture is upscaled as it is shown", still.orientation)
            turned = still is not None and still.turned
            return MediaInfo(
                width=cc.height if turned else cc.width,
                height=cc.width if turned else cc.height,
                time_base=stream.time_base or Fraction(1, 25),
                frame_rate=Fraction(rate) if rate else None,
                frames=frames or None,
                duration=duration,
                colour=Colour.of(stream.codec_context),
                bit_depth=_bit_depth(cc.format.name if cc.format else None),
                is_image=fmt_name in IMAGE_FORMATS,
                format_name=fmt_name,
                codec_name=cc.name,
                video_stream_index=stream.index,
                sample_aspect_ratio=_sample_aspect_ratio(stream),
                display_matrix=first.matrix,
                deinterlace=mode,
                cover_art=any(s.disposition & av.stream.Disposition.attached_pic for s in container.streams.video),
                start_offset=max(Fraction(container.start_time or 0, av.time_base), Fraction(0)),
                still=still,
                alpha=_alpha_decoder(stream) is not None
                or (first.alpha and (fmt_name not in _CHECK_ALPHA or first.see_through)),
                hdr=first.hdr,
            )

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        job = self.job
        if job.media is not None and job.media.format_name == ANIMATED_WEBP:
            yield from self._animation()
            return
        for seek in (True, False) if job.start_index > 0 and job.after_pts is not None else (False,):
            for frame in self._decode(seek):
                if frame is _SEEK_MISSED:
                    job.log.debug("decode: seeking landed after the resume point; scanning from the start")
                    break
                yield frame
            else:
                return

    def _animation(self) -> Iterator[Frame]:
        """An animated WebP's frames (Pillow), from the job's resume point to its end point, read once."""
        job, media = self.job, self.job.media
        assert media is not None
        pts = 0  # milliseconds: each frame starts where the ones before it end
        for index, (pixels, alpha, duration) in enumerate(webp_frames(job.input, media.alpha)):
            if job.until_pts is not None and pts >= job.until_pts:
                break
            if index >= job.start_index and (job.after_pts is None or pts > job.after_pts):
                yield Frame(pixels, pts, media.time_base, media.colour, index, alpha=alpha, duration=duration)
            pts += duration

    def frame_times(self) -> list[int] | None:
        """Every frame's pts, from the packets alone (sorted: B-frames come out of order).

        None where packets do not tell: a missing timestamp, a stream
        deinterlaced to field rate (one frame per field), a still image.
        """
        media = self.job.media
        if media is None or media.is_image or media.deinterlace == "field":
            return None
        path = self.job.input
        times: list[int] = []
        with open_input(path) as container:
            stream = video_stream(container, path, self.options.video_track)
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        if packet.pts is None:
                            return None
                        times.append(packet.pts)
            except av.error.FFmpegError:
                return None  # a damaged file runs as one unit, and fails there with its reason
        times.sort()
        return times if len(set(times)) == len(times) else None

    def _deinterlacing(self, stream: Any, interlaced: bool) -> str:
        """``"frame"``, ``"field"`` or ``""``: how this stream is deinterlaced (see DecodeOptions.deinterlace)."""
        mode = self.options.deinterlace
        if mode == "auto":
            flagged = int(stream.codec_context.field_order or 0) > 1  # 0 unknown, 1 progressive, else interlaced
            return "frame" if flagged or interlaced else ""
        return "" if mode == "off" else mode

    def _decode(self, seek: bool) -> Iterator[Any]:
        """Frames from the start, or from the job's resume point (``start_index``, after ``after_pts``).

        Seeking lands on a keyframe at or before the resume point; frames up to
        it are decoded and dropped. Should the demuxer land after it (some
        containers seek inexactly), :data:`_SEEK_MISSED` asks for a scan from
        the start instead; streams without timestamps are always scanned, and
        their frames counted.
        """
        path, job = self.job.input, self.job
        index = job.start_index if seek else 0
        with open_input(path) as container:
            stream = video_stream(container, path, self.options.video_track)
            stream.thread_type = self.options.thread_type
            if self.options.threads:
                stream.thread_count = self.options.threads
            media = job.media
            mode = media.deinterlace if media is not None else self._deinterlacing(stream, False)
            deinterlacer = _Deinterlacer(stream, mode) if mode else None
            decoder = None
            if media is not None and media.alpha and (name := _alpha_decoder(stream)):
                decoder = av.CodecContext.create(name, "r")  # FFmpeg's own VP8/VP9 decoders drop the alpha plane
                decoder.width, decoder.height = stream.codec_context.width, stream.codec_context.height
                decoder.thread_type = self.options.thread_type
            source_tb = stream.time_base or Fraction(1, 25)
            time_base = source_tb / 2 if mode == "field" else source_tb  # fields: twice the frames, half the step
            step = max(1, _frame_step(stream, source_tb) // (2 if mode == "field" else 1))
            declared = stream.frames
            packets = [0]
            last_pts: int | None = None
            if seek:
                try:
                    target = int(job.after_pts * time_base / source_tb)
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                except av.error.FFmpegError:  # not seekable: count frames from the start instead
                    yield _SEEK_MISSED
                    return
            first = True
            try:
                for av_frame in _decoded(container, stream, deinterlacer, packets, decoder):
                    pts = av_frame.pts
                    if pts is None:
                        if seek:  # timestamps needed to find the resume point: count frames instead
                            yield _SEEK_MISSED
                            return
                        pts = 0 if last_pts is None else last_pts + step
                    last_pts = pts
                    if seek and first and pts > job.after_pts + step + step // 2:
                        yield _SEEK_MISSED
                        return
                    first = False
                    if job.until_pts is not None and pts >= job.until_pts:  # the next unit's first frame
                        break
                    if seek and pts <= job.after_pts:  # done by an earlier run
                        continue
                    if not seek and index < job.start_index:  # the same, counted from the start
                        index += 1
                        continue
                    yield self._to_frame(av_frame, pts, time_base, index)
                    index += 1
            except av.error.FFmpegError as exc:
                raise VsrError(
                    f"{path}: decoding failed after {index} frames ({ffmpeg_reason(exc)}): "
                    "the file is truncated or corrupt"
                ) from None
            if index == 0:
                raise VsrError(f"{path}: no frame could be decoded (truncated or corrupt file)")
            if job.until_pts is None:  # a unit that stops early is complete by definition
                self._check_complete(stream, 0 if seek else declared, packets[0], last_pts, step, time_base, index)

    def _check_complete(
        self, stream: Any, declared: int, packets: int, last_pts: int | None, step: int, tb: Fraction, index: int
    ) -> None:
        """Refuse a source that ended before its own index or duration says (a truncated download, say).

        vsr fails rather than silently writing a shorter video: a cut-off copy
        under the final name would look like success.
        """
        path = self.job.input
        if declared and packets < declared:
            raise VsrError(
                f"{path}: file is truncated: its index lists {declared} frames but only {packets} are present"
            )
        media = self.job.media
        if declared or media is None or media.duration is None or last_pts is None or media.is_image:
            return
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        end = float((last_pts + step) * tb)
        missing = start + media.duration - end
        if missing > max(1.0, 0.02 * media.duration):
            raise VsrError(
                f"{path}: file is truncated: decoding stopped at {end - start:.2f}s of {media.duration:.2f}s "
                f"({index} frames)"
            )

    def _to_frame(self, av_frame: Any, pts: int, time_base: Fraction, index: int) -> Frame:
        media = self.job.media
        pixels, alpha, colour = to_rgba(av_frame, alpha=media is not None and media.alpha)
        still = media.still if media is not None else None
        if still is not None and still.orientation != 1:  # a phone photo: upscaled as it is shown
            pixels = upright(pixels, still.orientation)
            alpha = None if alpha is None else upright(alpha, still.orientation)
        # a frame's own duration (an animation's last frame shows this long); deinterlaced frames get new ones
        duration = int(av_frame.duration or 0) if media is None or not media.deinterlace else 0
        return Frame(pixels, pts, time_base, colour, index, alpha=alpha, duration=duration or None)


def _decoded(
    container: Any, stream: Any, deinterlacer: _Deinterlacer | None, packets: list[int], decoder: Any = None
) -> Iterator[Any]:
    """The stream's decoded frames, deinterlaced if asked; counts the packets read in ``packets[0]``.

    ``decoder``: a codec context to decode with instead of the stream's own (libvpx for VP9 with alpha).
    """
    for packet in container.demux(stream):
        if packet.size:
            packets[0] += 1
        for frame in packet.decode() if decoder is None else decoder.decode(packet):
            yield from deinterlacer.push(frame) if deinterlacer else (frame,)
    if deinterlacer:
        yield from deinterlacer.flush()


class _Deinterlacer:
    """FFmpeg's bwdif through PyAV's filter graph, at frame rate or at field rate (one frame per field).

    bwdif halves the time base; at frame rate its pts are halved back, so
    frames keep the source's exact timestamps.
    """

    def __init__(self, stream: Any, mode: str) -> None:
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(template=stream)
        bwdif = self.graph.add("bwdif", f"mode={'send_field' if mode == 'field' else 'send_frame'}:parity=auto")
        sink = self.graph.add("buffersink")
        source.link_to(bwdif)
        bwdif.link_to(sink)
        self.graph.configure()
        self.halve = mode == "frame"

    def push(self, frame: Any) -> list[Any]:
        self.graph.vpush(frame)
        return self._drain()

    def flush(self) -> list[Any]:
        self.graph.vpush(None)
        return self._drain()

    def _drain(self) -> list[Any]:
        out = []
        while True:
            try:
                frame = self.graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            if self.halve and frame.pts is not None:
                frame.pts //= 2
            out.append(frame)


def _sample_aspect_ratio(stream: Any) -> Fraction | None:
    """The pixels' shape: the container's (Matroska display size, MP4 ``pasp``) before the bitstream's."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar and sar > 0:
            return Fraction(sar)
    return None


#: ``MediaInfo.format_name`` of an animated WebP (read with Pillow: FFmpeg reads still WebP only).
ANIMATED_WEBP = "webp_anim"


def _animation_info(animation: Animation) -> MediaInfo:
    frames = len(animation.times)
    duration = Fraction(animation.duration_ms, 1000)
    return MediaInfo(
        width=animation.width,
        height=animation.height,
        time_base=Fraction(1, 1000),
        frame_rate=(frames / duration).limit_denominator(1001) if duration else None,
        frames=frames,
        duration=float(duration),
        colour=Colour(),
        is_image=frames == 1,  # one frame: a still that says it is an animation
        format_name=ANIMATED_WEBP,
        codec_name="webp",
        alpha=animation.alpha,
    )


@dataclass(frozen=True)
class _FirstFrame:
    """What the first frame tells: the display matrix of a phone clip (None when upright), interlacing,
    HDR metadata, and whether it has an alpha plane (``alpha``) with any pixel not fully opaque
    (``see_through``)."""

    matrix: tuple[int, ...] | None = None
    interlaced: bool = False
    hdr: HdrMetadata | None = None
    alpha: bool = False
    see_through: bool = False


#: Formats whose decoders hand out an alpha plane whether the picture uses it or not (GIF is always bgra):
#: they have transparency only if a picture shows some.
_CHECK_ALPHA = {"gif", "png_pipe", "webp_pipe", "tiff_pipe", "apng", "image2"}
#: Animations: every frame is looked at for transparency when the first shows none (they decode in moments).
_ANIMATIONS = {"gif", "apng"}


def _alpha_decoder(stream: Any) -> str | None:
    """libvpx's decoder for a VP8/VP9 stream with an alpha plane (WebM's ``alpha_mode``), else None."""
    alpha_mode = next((v for k, v in stream.metadata.items() if k.lower() == "alpha_mode"), "0")
    if alpha_mode.strip() != "1":
        return None
    return {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(stream.codec_context.name)


def _first_frame(container: Any, stream: Any) -> _FirstFrame:
    """What the first frame tells (see :class:`_FirstFrame`); for GIF and APNG, whether any frame is see-through.

    FFmpeg hands the container's matrix (MP4/MOV ``tkhd``, Matroska projection)
    and HDR metadata to decoded frames as side data. A still's side data (ICC
    profiles, EXIF) is not read: Pillow reads its tags (:mod:`vsr.stills`), and
    PyAV fails on some of them.
    """
    fmt = container.format.name.split(",")[0]
    try:
        frames = container.decode(stream)
        frame = next(frames, None)
        if frame is None:
            return _FirstFrame()
        side = _FirstFrame() if fmt in IMAGE_FORMATS else _side_data(frame)
        alpha = _alpha_plane(frame)
        see_through = alpha is not None and int(alpha.min()) < np.iinfo(alpha.dtype).max
        if fmt in _ANIMATIONS and not see_through:  # a sticker may turn transparent after its first frame
            see_through = any(_see_through(later) for later in frames)
        return replace(side, alpha=alpha is not None, see_through=see_through)
    except (av.error.FFmpegError, struct.error, ValueError):
        pass  # a file that does not decode is refused, with its reason, when its frames are read
    return _FirstFrame()


def _alpha_plane(frame: Any) -> np.ndarray | None:
    """``frame``'s alpha plane, for formats with alpha and palettes (a PNG's tRNS, GIF); else None."""
    name = frame.format.name
    return to_rgba(frame)[1] if has_alpha(name) or name == "pal8" else None


def _see_through(frame: Any) -> bool:
    alpha = _alpha_plane(frame)
    return alpha is not None and int(alpha.min()) < np.iinfo(alpha.dtype).max


def _side_data(frame: Any) -> _FirstFrame:
    """The display matrix, interlacing and HDR metadata of a video's first frame."""
    matrix = None
    try:
        count = len(frame.side_data)
    except ValueError:  # a side data type PyAV does not know
        count = 0
    for i in range(count):
        try:
            data = frame.side_data[i]
            if "DISPLAYMATRIX" in str(data.type):
                matrix = struct.unpack("=9i", bytes(data)[:36])
        except (ValueError, struct.error):
            continue
    try:
        hdr = read_hdr(frame)
    except ValueError:
        hdr = None
    return _FirstFrame(None if matrix == _IDENTITY else matrix, bool(frame.interlaced_frame), hdr)


_IDENTITY = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)

#: Yielded by :meth:`PyAVDecoder._decode` when a seek cannot be trusted.
_SEEK_MISSED = object()


def _frame_step(stream: Any, time_base: Fraction) -> int:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return max(1, round(1 / (Fraction(rate) * time_base)))


@hookimpl
def register_decoders(register: StageRegister) -> None:
    register(PyAVDecoder)
