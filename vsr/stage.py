"""The stage interface: what every decoder, upscaler, smoother and encoder is."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vsr.frame import Colour, Frame
from vsr.hdr import HdrMetadata
from vsr.options import NoOptions
from vsr.stills import StillTags

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
    #: seconds the input's timestamps start at, when positive (MPEG-TS from a recorder): outputs start at 0
    start_offset: Fraction = Fraction(0)
    #: how an interlaced source is deinterlaced: "frame" or "field" rate, "" for none
    deinterlace: str = ""
    #: whether the input holds cover art (attached pictures)
    cover_art: bool = False
    #: how a player turns the picture (FFmpeg's display matrix: 9 ints, 16.16 and 2.30 fixed point), or None
    display_matrix: tuple[int, ...] | None = None
    #: a still's EXIF orientation, ICC profile and EXIF (width and height above are as it is shown)
    still: StillTags | None = None
    #: whether the video has transparency (an alpha plane): decoders then set :attr:`Frame.alpha`
    alpha: bool = False
    #: HDR10's static metadata and the dynamic metadata (Dolby Vision, HDR10+) the source carries, or None
    hdr: HdrMetadata | None = None


@dataclass(frozen=True)
class Prepared:
    """What a stage resolved from its options once per run (see :meth:`Stage.prepare`).

    Attributes:
        identity: what, beyond the options themselves, decides the stage's
            output (a model's weights digest, say); it goes into the settings
            hash, so a done-record or a resumed segment made with other
            weights is never taken for this run's.
        scale: how many times larger the stage makes frames (1: same size).
        resource: whatever the stage wants handed back when it is built for
            each file (the resolved model, say), so it is looked up once.
    """

    identity: Mapping[str, str] = field(default_factory=dict)
    scale: int = 1
    resource: Any = None


@dataclass(frozen=True)
class Job:
    """Everything a stage may need to know about the run it is part of; immutable.

    ``output`` is where the encoder writes: a temporary path that the runner
    renames to ``final_output`` once the pipeline has finished. A resumed video
    run starts at frame ``start_index``, the first with pts above
    ``after_pts``; a unit of a video cut for several workers (see
    :mod:`vsr.running.units`) also stops before the first frame with pts at or above
    ``until_pts`` (decoders honour all three). Encoders write ``metadata`` into
    the output container's tags (vsr's own ``vsr`` tag is among them).

    Each stage receives its own copy, with ``role`` (its place in the
    pipeline), ``prepared`` (what its :meth:`Stage.prepare` returned) and
    ``state``: the history it attached to the last frame of the previous
    segment (see :meth:`vsr.frame.Frame.carrying`), empty when the stream
    starts afresh. A stage with history (a temporal smoother) restores it from
    ``state``, so a resumed run equals an uninterrupted one. ``pinned`` names
    the stage's options that the user set on the command line: keep to them
    strictly where the stage would otherwise adapt the preset's choice.
    """

    input: Path
    output: Path
    final_output: Path
    registry: Registry | None = None
    media: MediaInfo | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("vsr"))
    start_index: int = 0
    after_pts: int | None = None
    until_pts: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    role: str = ""
    prepared: Prepared = field(default_factory=Prepared)
    state: Mapping[str, np.ndarray] = field(default_factory=dict)
    pinned: frozenset[str] = frozenset()


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

    @classmethod
    def prepare(cls, options: Any, registry: Registry) -> Prepared:
        """Resolve, once per run, what the options name (a model file, say); the default resolves nothing.

        Called when the run plan is made, before any file is opened; raise
        :class:`vsr.errors.UsageError` for options that name nothing usable.
        The result is handed to every stage built from the plan as
        ``job.prepared``, and its ``identity`` goes into the settings hash.
        """
        return Prepared()

    def probe(self) -> MediaInfo | None:
        """Decoders: open the source and describe it, before any frame flows.

        Called once, before the other stages are built, so that bad input is
        refused early and later stages (the encoder) know the source.
        """
        return None

    def frame_times(self) -> Sequence[int] | None:
        """Decoders: the pts of every frame :meth:`process` will yield, in order, from a pass that decodes nothing.

        A decoder that can tell (and honours ``job.until_pts``) lets a video
        be cut into units that separate workers upscale at once; ``None``, the
        default, runs the file as one unit.
        """
        return None

    def check_output(self, width: int, height: int) -> None:
        """Encoders: refuse (:class:`vsr.errors.UsageError`) a destination they cannot write, before any upscaling.

        Called once per file, with ``job.final_output`` and the upscaled size,
        before any network is built: the container the output's suffix names,
        a codec it holds, the frame size. So what the encoder cannot write
        fails at once, not after hours of upscaling.
        """

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Map an iterator of frames to an iterator of frames.

        Decoders receive an empty iterator and yield the source's frames;
        encoders write the frames they receive and yield them on.
        """
        raise NotImplementedError
