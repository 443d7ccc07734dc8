"""vsr: video super-resolution with ESRGAN in Keras.

What a plugin may import is what this module exports, and nothing else
(docs/plugins.md documents each name; vsr's own ``stages/`` keep to it, and a
test checks that they do). The names load on first use, so ``import vsr``
stays light: no TensorFlow, no FFmpeg.

- **Every plugin**: :data:`hookimpl`; the stage interface (:class:`Stage`,
  :class:`Job`, :class:`MediaInfo`, :class:`Prepared`, :class:`Frame`,
  :class:`Colour`); the registers each hook hands over; :class:`ModelSpec`,
  :class:`ConvertedModel`, :class:`Engine`; the errors (:class:`VsrError`
  for a failure the user can act on, :class:`UsageError` for a mistake in how
  vsr was called, :class:`WriteError` for a resource that failed).
- **Decoders and encoders**: opening and describing media, colour tags,
  codec and container checks, copying the other streams (:class:`Remuxer`),
  resumable segments (:class:`SegmentedEncoder`).
- **Upscalers and engines**: the model store, building networks, the tiler,
  the Keras engine and the graph every engine runs.
- **Smoothers**: motion between frames and scene changes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vsr.hookspecs import hookimpl

__version__ = "0.1.0"

#: Each exported name and the module that defines it.
_EXPORTS = {
    # every plugin
    "Stage": "vsr.stage",
    "Job": "vsr.stage",
    "MediaInfo": "vsr.stage",
    "Prepared": "vsr.stage",
    "Frame": "vsr.frame",
    "Colour": "vsr.frame",
    "RANGE_PC": "vsr.frame",
    "TRC_PQ": "vsr.frame",
    "to_levels": "vsr.frame",
    "from_levels": "vsr.frame",
    "VsrError": "vsr.errors",
    "UsageError": "vsr.errors",
    "WriteError": "vsr.errors",
    "resource_failure": "vsr.errors",
    "shown": "vsr.errors",
    "Registry": "vsr.registry",
    "StageRegister": "vsr.registry",
    "EngineRegister": "vsr.registry",
    "ModelRegister": "vsr.registry",
    "PresetRegister": "vsr.registry",
    "ModelSpec": "vsr.models.registry",
    "ncnn_model": "vsr.models.registry",
    "ConvertedModel": "vsr.models.converted",
    "Engine": "vsr.engine",
    # decoders and encoders
    "open_input": "vsr.media",
    "video_stream": "vsr.media",
    "to_rgb": "vsr.media",
    "to_rgba": "vsr.media",
    "has_alpha": "vsr.media",
    "Animation": "vsr.animation",
    "animated_webp": "vsr.animation",
    "webp_frames": "vsr.animation",
    "HdrMetadata": "vsr.hdr",
    "read_hdr": "vsr.hdr",
    "ffmpeg_reason": "vsr.media",
    "IMAGE_FORMATS": "vsr.media",
    "IMAGE_CODECS": "vsr.media",
    "IMAGE_SUFFIXES": "vsr.media",
    "output_colour": "vsr.colour",
    "sws_matrix": "vsr.colour",
    "check_size": "vsr.codecs",
    "container_format": "vsr.codecs",
    "holds": "vsr.codecs",
    "segment_suffix": "vsr.codecs",
    "CONTAINER_CODECS": "vsr.codecs",
    "Remuxer": "vsr.remux",
    "copy_description": "vsr.remux",
    "mux": "vsr.remux",
    "SegmentedEncoder": "vsr.segments",
    "SegmentWriter": "vsr.segments",
    "Segment": "vsr.segments",
    "SegmentTiming": "vsr.segments",
    "StillTags": "vsr.stills",
    "read_still_tags": "vsr.stills",
    "upright": "vsr.stills",
    "embed_still_tags": "vsr.stills",
    # upscalers and engines
    "KerasEngine": "vsr.engine",
    "converted_digest": "vsr.engine",
    "io_graph": "vsr.engine",
    "build_network": "vsr.models.build",
    "build_upscaler": "vsr.inference",
    "cartoon_frame": "vsr.sample",
    "RegionReuse": "vsr.reuse",
    "has_gpu": "vsr.device",
    "quiet_native_stderr": "vsr.backend",
    "models_dir": "vsr.models.store",
    "resolve_model": "vsr.models.store",
    "weights_digest": "vsr.models.store",
    "load_converted": "vsr.models.store",
    "imported_models": "vsr.models.store",
    "imported_spec": "vsr.models.store",
    "sha256_file": "vsr.models.store",
    "write_atomic": "vsr.files",
    "RRDBNet": "vsr.models.rrdbnet",
    "SRVGGNetCompact": "vsr.models.srvgg",
    # smoothers
    "FlowEstimator": "vsr.motion",
    "gate": "vsr.motion",
    "content_change": "vsr.metrics",
    "hsv": "vsr.metrics",
}

__all__ = ["__version__", "hookimpl", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from vsr.animation import Animation, animated_webp, webp_frames
    from vsr.backend import quiet_native_stderr
    from vsr.codecs import CONTAINER_CODECS, check_size, container_format, holds, segment_suffix
    from vsr.colour import output_colour, sws_matrix
    from vsr.device import has_gpu
    from vsr.engine import Engine, KerasEngine, converted_digest, io_graph
    from vsr.errors import UsageError, VsrError, WriteError, resource_failure, shown
    from vsr.files import write_atomic
    from vsr.frame import RANGE_PC, TRC_PQ, Colour, Frame, from_levels, to_levels
    from vsr.hdr import HdrMetadata, read_hdr
    from vsr.inference import build_upscaler
    from vsr.media import (
        IMAGE_CODECS,
        IMAGE_FORMATS,
        IMAGE_SUFFIXES,
        ffmpeg_reason,
        has_alpha,
        open_input,
        to_rgb,
        to_rgba,
        video_stream,
    )
    from vsr.metrics import content_change, hsv
    from vsr.models.build import build_network
    from vsr.models.converted import ConvertedModel
    from vsr.models.registry import ModelSpec, ncnn_model
    from vsr.models.rrdbnet import RRDBNet
    from vsr.models.srvgg import SRVGGNetCompact
    from vsr.models.store import (
        imported_models,
        imported_spec,
        load_converted,
        models_dir,
        resolve_model,
        sha256_file,
        weights_digest,
    )
    from vsr.motion import FlowEstimator, gate
    from vsr.registry import EngineRegister, ModelRegister, PresetRegister, Registry, StageRegister
    from vsr.remux import Remuxer, copy_description, mux
    from vsr.reuse import RegionReuse
    from vsr.sample import cartoon_frame
    from vsr.segments import Segment, SegmentedEncoder, SegmentTiming, SegmentWriter
    from vsr.stage import Job, MediaInfo, Prepared, Stage
    from vsr.stills import StillTags, embed_still_tags, read_still_tags, upright
