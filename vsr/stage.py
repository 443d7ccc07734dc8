"""The stage interface: what every decoder, upscaler, smoother and encoder is."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vsr.frame import Colour, Frame
from vsr.options import NoOptions

if TYPE_CHECKING:
    from vsr.registry import Registry

ROLES = ("decode", "upscale", "smooth", "encode")


@dataclass
class MediaInfo:
    """What a decoder learned about its source before the first frame."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    frames: int | None
    duration: float | None
    colour: Colour
    bit_depth: int = 8
    is_image: bool = False
    format_name: str = ""
    codec_name: str = ""
    video_stream_index: int = 0
    sample_aspect_ratio: Fraction | None = None


@dataclass
class Job:
    """Everything a stage may need to know about the run it is part of.

    ``output`` is where the encoder writes: a temporary path that the runner
    renames to ``final_output`` once the pipeline has finished.

    Resumable runs (see :mod:`vsr.run`) also set ``segment_frames`` and
    ``work_dir``: frames ``k * segment_frames`` start a new segment, which the
    encoder writes as its own file in ``work_dir`` and reports through
    ``on_segment``; smoothers start afresh there. ``start_index`` and ``after_pts`` tell the decoder where a resumed
    run starts: at frame ``start_index``, the first with pts above
    ``after_pts``.
    """

    input: Path
    output: Path
    final_output: Path
    registry: Registry | None = None
    media: MediaInfo | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("vsr"))
    segment_frames: int = 0
    start_index: int = 0
    after_pts: int | None = None
    on_segment: Callable[[Segment], None] | None = None
    work_dir: Path | None = None

    def starts_segment(self, index: int) -> bool:
        """Whether frame ``index`` is the first of a segment (a smoother's history ends there)."""
        return self.segment_frames > 0 and index % self.segment_frames == 0


@dataclass
class Segment:
    """A finished piece of a resumable run's video: frames ``first_index`` on, in ``path``."""

    number: int
    path: Path
    first_index: int
    frames: int
    last_pts: int
    first_dts: int = 0
    time_base: Fraction = Fraction(1, 1)


class Stage:
    """Base class of every pipeline stage.

    Subclasses set ``name`` (unique within their role), a one-line
    ``description``, and ``Options`` (a dataclass of typed options with
    defaults), and implement :meth:`process`. A stage object is built once per
    job with validated options; frames then stream through ``process``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[Any]] = NoOptions

    def __init__(self, options: Any, job: Job) -> None:
        self.options = options
        self.job = job

    def probe(self) -> MediaInfo | None:
        """Decoders: open the source and describe it, before any frame flows.

        Called once, before the other stages are built, so that bad input is
        refused early and later stages (the encoder) know the source.
        """
        return None

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Map an iterator of frames to an iterator of frames.

        Decoders receive an empty iterator and yield the source's frames;
        encoders write the frames they receive and yield them on.
        """
        raise NotImplementedError
