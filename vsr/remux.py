"""What an output keeps of its input besides the upscaled pictures.

The other streams (audio, subtitles, attachments), copied packet by packet
and interleaved by time, and what a player shows about the file: container
tags (title, artist, comment, ...), chapters, and each stream's tags
(language, title) and flags (default, forced), as ``ffmpeg -map_metadata 0
-map_chapters 0`` would.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Any

import av

from vsr.codecs import PLAYABLE_IN

#: Cover art codecs: attachment suffix and MIME type.
_PICTURES = {"png": (".png", "image/png"), "mjpeg": (".jpg", "image/jpeg"), "bmp": (".bmp", "image/bmp")}


class Remuxer:
    """Copies the input's other streams into the output, interleaved by time."""

    def __init__(
        self,
        output: Any,
        source: Any,
        video_index: int,
        log: Any,
        offset: Fraction = Fraction(0),
        audio_codec: str | None = None,
    ) -> None:
        """``audio_codec``: re-encode with it the audio streams the output cannot hold (WebM: Opus), else drop them."""
        self.output = output
        self.offset = offset  # seconds every timestamp moves back, so the output starts at 0
        self.source = source
        self.map: dict[int, Any] = {}
        self.transcoders: dict[int, _Transcoder] = {}
        self.ready: deque[Any] = deque()
        supported = output.supported_codecs | PLAYABLE_IN.get(output.format.name, set())
        chapter_tracks = "mov" in source.format.name and bool(source.chapters())
        for stream in source.streams:
            if stream.index == video_index or stream.type == "attachment":
                continue
            if stream.disposition & av.stream.Disposition.attached_pic and "matroska" in output.format.name:
                self._attach_picture(stream)  # Matroska keeps cover art as an attachment
                continue
            if stream.type == "data" and chapter_tracks:
                continue  # MP4/QuickTime keep chapters in a text track; the chapters are copied and it is re-made
            if stream.type not in ("audio", "subtitle", "video"):  # other video tracks, cover art: as they are
                log.warning(
                    "not copying %s stream #%d: only audio, video, subtitles and attachments are copied",
                    stream.type,
                    stream.index,
                )
                continue
            name = stream.codec_context.name if stream.codec_context else None
            if name not in supported and stream.type == "audio" and audio_codec is not None:
                self.transcoders[stream.index] = _Transcoder(stream, output, audio_codec)
                self.map[stream.index] = self.transcoders[stream.index].stream
                log.info(
                    "audio stream #%d (%s) is re-encoded as %s: the output container cannot hold it",
                    stream.index,
                    name,
                    audio_codec,
                )
                continue
            if name not in supported:
                log.warning(
                    "not copying %s stream #%d (%s): the output container cannot hold it",
                    stream.type,
                    stream.index,
                    name,
                )
                continue
            self.map[stream.index] = output.add_stream_from_template(stream)
            copy_stream_info(stream, self.map[stream.index])
        self._copy_attachments(log)
        self.packets = source.demux(*[source.streams[i] for i in self.map]) if self.map else iter(())
        self.pending: Any = None

    def _attach_picture(self, stream: Any) -> None:
        with av.open(self.source.name) as again:
            picture = next((p for p in again.demux(again.streams[stream.index]) if p.size), None)
        if picture is None:
            return
        codec = stream.codec_context.name if stream.codec_context else ""
        suffix, mimetype = _PICTURES.get(codec, (".bin", "application/octet-stream"))
        name = stream.metadata.get("filename") or f"cover{suffix}"
        self.output.add_attachment(name, stream.metadata.get("mimetype") or mimetype, bytes(picture))

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
        while not self.ready:
            packet = next(self.packets, None)
            if packet is None:
                for transcoder in self.transcoders.values():  # the encoders' last packets
                    self.ready.extend(transcoder.feed(None))
                self.transcoders.clear()
                return self.ready.popleft() if self.ready else None
            if packet.size == 0:  # the demuxer's flushing packets
                continue
            if self.offset:
                shift_packet(packet, round(self.offset / packet.time_base))
            transcoder = self.transcoders.get(packet.stream.index)
            if transcoder is None:
                return packet
            self.ready.extend(transcoder.feed(packet))
        return self.ready.popleft()

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
            if packet.stream.index in self.map:  # a copied packet; a re-encoded one is bound to its stream already
                packet.stream = self.map[packet.stream.index]
            self.output.mux(packet)
            self.pending = None


class _Transcoder:
    """One audio stream decoded and encoded again, for a container that cannot hold its codec."""

    def __init__(self, source: Any, output: Any, codec: str) -> None:
        self.decoder = source.codec_context
        rate = 48000 if codec == "libopus" else (source.codec_context.sample_rate or 48000)
        self.stream = output.add_stream(codec, rate=rate)
        layout = source.codec_context.layout
        self.stream.layout = layout.name if layout.nb_channels <= 2 else "stereo"
        self.stream.time_base = Fraction(1, rate)
        copy_stream_info(source, self.stream)
        self.rate = rate
        self.next_pts: int | None = None

    def feed(self, packet: Any) -> list[Any]:
        """The output packets that ``packet`` (None: the end) completes."""
        out = []
        for frame in self.decoder.decode(packet):
            if self.next_pts is None:  # the first sound's time, in the output's time base
                start = frame.pts * frame.time_base if frame.pts is not None else 0
                self.next_pts = round(start * self.rate)
            frame.pts = None  # PyAV's resampler and frame queue time the encoder's frames from the first
            out.extend(self.stream.encode(frame))
        if packet is None:
            out.extend(self.stream.encode(None))
        shift = self.next_pts or 0
        for encoded in out:
            if encoded.pts is not None:
                encoded.pts += shift
            if encoded.dts is not None:
                encoded.dts += shift
        return out


def shift_packet(packet: Any, ticks: int) -> None:
    """Move a packet ``ticks`` of its time base earlier."""
    packet.pts = None if packet.pts is None else packet.pts - ticks
    packet.dts = None if packet.dts is None else packet.dts - ticks


def mux(output: Any, packets: list[Any], remux: Remuxer | None) -> None:
    """Mux video packets, copying the other streams' packets up to each one's time first."""
    for packet in packets:
        if remux is not None and packet.dts is not None:
            remux.pump(float(packet.dts * packet.time_base))
        output.mux(packet)


#: Tags about how a file or stream was written, not what it holds: the muxer and encoders write their own.
_WRITER_TAGS = {"encoder", "duration", "major_brand", "minor_version", "compatible_brands"}


def copy_tags(source: dict[str, str], target: Any) -> None:
    for key, value in source.items():
        if key.lower() not in _WRITER_TAGS:
            target[key] = value


def copy_stream_info(source: Any, target: Any) -> None:
    """A stream's tags (language, title, ...) and disposition flags (default, forced, ...)."""
    copy_tags(dict(source.metadata), target.metadata)
    target.disposition = source.disposition


def copy_description(source: Any, output: Any, video_in: Any, video_out: Any) -> None:
    """Container tags, chapters, and the upscaled video track's own tags and flags."""
    copy_tags(dict(source.metadata), output.metadata)
    chapters = source.chapters()
    if chapters:
        output.set_chapters(chapters)
    copy_stream_info(video_in, video_out)
