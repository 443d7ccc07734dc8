"""Copying the input's other streams (audio, subtitles, attachments) into an output, interleaved by time."""

from __future__ import annotations

from typing import Any


class Remuxer:
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


def mux(output: Any, packets: list[Any], remux: Remuxer | None) -> None:
    """Mux video packets, copying the other streams' packets up to each one's time first."""
    for packet in packets:
        if remux is not None and packet.dts is not None:
            remux.pump(float(packet.dts * packet.time_base))
        output.mux(packet)
