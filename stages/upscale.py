"""The ``esrgan`` upscaler: a registered ESRGAN-family model, tiled and batched."""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import av
import numpy as np

from vsr import (
    Engine,
    EngineRegister,
    Frame,
    Job,
    KerasEngine,
    ModelSpec,
    Prepared,
    RegionReuse,
    Registry,
    Stage,
    StageRegister,
    UsageError,
    VsrError,
    from_levels,
    hookimpl,
    to_levels,
)

log = logging.getLogger("vsr")


@dataclass
class UpscaleOptions:
    model: str = "realesr-animevideov3"
    """Registered model name (see ``vsr models``), or a path to a .pth/.safetensors/ncnn .param file."""
    tile: int | Literal["auto"] = "auto"
    """Core tile size in input pixels; "auto": the largest that fits the device's memory; 0: whole frames."""
    tile_pad: int | Literal["auto"] = "auto"
    """Context pixels around each tile; "auto": what the model's architecture needs (vsr.inference.AUTO_PAD)."""
    batch: int | Literal["auto"] = "auto"
    """Tiles (or small whole frames) per network call; "auto": per architecture (vsr.inference.AUTO_BATCH)."""
    precision: Literal["auto", "float32", "bfloat16", "float16", "int8"] = "auto"
    """Compute precision; "auto": float16 on a GPU, bfloat16 on a CPU with avx512_bf16/AMX, else float32 (never
    int8). "int8": the openvino engine, quantized with NNCF (pip install 'vsr[int8]'; docs/reuse.md)."""
    output_bits: Literal[0, 8, 16] = 0
    """Bits per channel of the upscaled frames: 0 keeps the input's (8, or 16 for deep sources)."""
    engine: str = "auto"
    """What runs the network: "keras", "openvino" (if installed) or a plugin's; "auto": the fastest here."""
    reuse: bool = True
    """Run the network only where the picture changed (held cameras, title cards, animation on twos): the rest
    of each frame is the previous output's (vsr.reuse, docs/upscaling.md)."""
    reuse_threshold: float | Literal["auto"] = "auto"
    """How much a block's input may change, in 8-bit levels, and still reuse its output; "auto": three times
    the clip's noise, estimated as it plays, within 2..8."""
    alpha: Literal["network", "bicubic"] = "network"
    """How a transparent source's alpha plane is scaled: "network" (the model on alpha as grey, as Real-ESRGAN
    does: 6-9 dB closer to a 4x truth on a logo's edges, and the network's time again on frames whose alpha
    is not one value), or "bicubic" (about 1 ms a frame; softer edges). See docs/kept.md."""

    def validate(self) -> str | None:
        if (self.tile_pad != "auto" and self.tile_pad < 0) or (self.tile != "auto" and self.tile < 0):
            return "tile and tile_pad must be >= 0"
        if self.tile != "auto" and 0 < self.tile < 16:
            return "tile must be 0 (off) or at least 16"
        if self.batch != "auto" and not 1 <= self.batch <= 64:
            return "batch must be from 1 to 64"
        if (self.tile != "auto" and self.tile > 8192) or (self.tile_pad != "auto" and self.tile_pad > 512):
            return "tile must be at most 8192 and tile_pad at most 512"
        if self.reuse_threshold != "auto" and not 0 <= self.reuse_threshold <= 64:
            return "reuse_threshold must be from 0 to 64 levels, or auto"
        return None


@dataclass(frozen=True)
class Resolved:
    """What :meth:`ESRGANUpscaler.prepare` looked up: the model and the engines it may run on."""

    spec: ModelSpec
    #: the engine named in the options, or every registered one for ``engine = "auto"``
    engines: tuple[type[Engine], ...]


def choose_engine(engines: tuple[type[Engine], ...], gpu: bool) -> type[Engine]:
    """The engine among ``engines`` to run on: the one named, or for ``engine = "auto"`` (all registered)
    the highest :meth:`~vsr.engine.Engine.auto_rank` that can run here."""
    if len(engines) == 1 and engines[0].missing() is None:
        return engines[0]  # named in the options (or the only one registered)
    ranked = [(rank, e) for e in engines if (rank := e.auto_rank(gpu)) is not None and e.missing() is None]
    if not ranked:
        raise VsrError("no upscaler engine can run here (the keras engine is disabled?)")
    return max(ranked, key=lambda item: item[0])[1]


#: The last network built, by model and settings: later files of a batch skip loading and compiling it.
_BUILT: dict[tuple[Any, ...], Any] = {}


class ESRGANUpscaler(Stage):
    """Upscale frames with a Keras ESRGAN-family network (RRDBNet or SRVGGNetCompact)."""

    name = "esrgan"
    description = "ESRGAN-family models in Keras (RRDBNet, SRVGGNetCompact), tiled, compiled"
    Options = UpscaleOptions

    @classmethod
    def prepare(cls, options: UpscaleOptions, registry: Registry) -> Prepared:
        """Look the model up once per run (a wrong name or a bad file fails before any work starts).

        Its weights digest (the SHA-256 the model store keeps) goes into the
        settings hash: a model re-imported or retrained under the same name
        makes earlier outputs and segments out of date.
        """
        from vsr import quiet_native_stderr, resolve_model, weights_digest

        engines = registry.engines.values()
        if options.precision == "int8":  # post-training quantization is the openvino engine's alone
            if options.engine not in ("auto", "openvino") or "openvino" not in engines:
                raise UsageError("precision int8 runs on the openvino engine only (--set upscale.engine=openvino)")
            if reason := engines["openvino"].missing():
                raise UsageError(f"precision int8 needs the openvino engine, which cannot run here: {reason}")
            if importlib.util.find_spec("nncf") is None:
                raise UsageError("precision int8 needs NNCF, Intel's quantization library: pip install 'vsr[int8]'")
            candidates: tuple[type[Engine], ...] = (engines["openvino"],)
        elif options.engine == "auto":
            candidates = tuple(engines.values())
        elif options.engine in engines:
            candidates = (engines[options.engine],)
            if reason := candidates[0].missing():
                raise UsageError(f"upscale engine {options.engine!r} cannot run here: {reason}")
        else:
            known = ", ".join(["auto", *sorted(engines)])
            raise UsageError(f"unknown upscale engine {options.engine!r} (known: {known})")
        spec = resolve_model(registry, options.model)
        with quiet_native_stderr():  # a first conversion may import the backend (see vsr.backend)
            digest = weights_digest(spec)
        identity = {"model": spec.name, "weights_sha256": digest}
        return Prepared(identity=identity, scale=spec.scale, resource=Resolved(spec, candidates))

    def __init__(self, options: UpscaleOptions, job: Job) -> None:
        super().__init__(options, job)
        resolved = job.prepared.resource
        if not isinstance(resolved, Resolved):
            raise ValueError("the esrgan upscaler is built from a run plan (vsr.plan), which resolves its model")
        self.spec = resolved.spec
        self.engines = resolved.engines

    def _build(self, deep_input: bool) -> Any:
        """The tiled network for this job; a batch's files with the same settings share one."""
        bits = self.options.output_bits or (16 if deep_input else 8)
        opts = self.options
        digest = self.job.prepared.identity.get("weights_sha256")
        key = (self.spec.name, digest, opts.engine, opts.precision, opts.tile, opts.tile_pad, opts.batch, bits)
        if key not in _BUILT:
            _BUILT.clear()  # one network at a time: a batch uses one model
            _BUILT[key] = self._build_new(bits)
        return _BUILT[key]

    def _build_new(self, bits: int) -> Any:
        from vsr import build_upscaler, has_gpu, load_converted, quiet_native_stderr

        opts = self.options
        with quiet_native_stderr():  # TensorFlow's native start-up lines (see vsr.backend)
            converted, cached = load_converted(self.spec)
            engine = choose_engine(self.engines, has_gpu())
            upscaler = build_upscaler(
                converted,
                engine=engine,
                precision=opts.precision,
                tile=opts.tile,
                pad=opts.tile_pad,
                batch=opts.batch,
                out_dtype="uint16" if bits == 16 else "uint8",
            )
        tiles = f"tiles of {upscaler.tile} px" if upscaler.tile else "whole frames"
        tiles += (" (auto)" if opts.tile == "auto" else "") + (f", context {upscaler.pad} px" if upscaler.tile else "")
        self.job.log.info(
            "upscale: %s (%s %s, x%d) with the %s engine%s in %s on %s, %s%s",
            self.spec.name,
            converted.arch,
            ",".join(f"{k}={v}" for k, v in converted.config.items() if k.startswith("num_") and "ch" not in k),
            self.spec.scale,
            engine.name,
            " (auto)" if opts.engine == "auto" else "",
            upscaler.precision + (" (auto)" if opts.precision == "auto" else ""),
            upscaler.engine.device,
            tiles,
            "" if cached else " (weights converted and cached)",
        )
        return upscaler

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None:
            return
        if first.colour.hdr:
            self.job.log.warning(
                "%s is HDR (%s): the models were trained on SDR pictures; vsr upscales its code values as they are "
                "and keeps its HDR tags, so judge the result on an HDR display",
                self.job.input.name,
                first.colour.hdr,
            )
        upscaler = self._build(first.pixels.dtype.itemsize > 1)
        per_call = upscaler.frames_per_call(first.height, first.width)
        scale = self.job.prepared.scale
        opts = self.options
        threshold = None if opts.reuse_threshold == "auto" else float(opts.reuse_threshold)
        reuse = RegionReuse(scale, upscaler.pad, threshold, self.job.state) if opts.reuse else None
        for chunk in _chunks(itertools.chain([first], iterator), per_call):
            pictures = [f.pixels for f in chunk]
            if reuse is not None:
                outputs = reuse.upscale(pictures, upscaler)
            else:  # mixed sizes are grouped by shape inside
                outputs = [(pixels, None) for pixels in upscaler.upscale(pictures)]
            for frame, (pixels, state) in zip(chunk, outputs, strict=True):
                alpha = None if frame.alpha is None else self._alpha(upscaler, frame.alpha, scale, pixels.dtype)
                upscaled = replace(frame, pixels=pixels, source=frame.pixels, alpha=alpha)
                yield upscaled if state is None else upscaled.carrying(self.job.role, state)
        if reuse is not None:
            self.job.log.info("%s", reuse.stats.summary())

    def _alpha(self, upscaler: Any, plane: np.ndarray, scale: int, dtype: np.dtype) -> np.ndarray:
        """A transparency plane scaled as the options say, in the upscaled pixels' dtype."""
        if int(plane.min()) == int(plane.max()):  # all opaque (or all clear): nothing to scale
            value = from_levels(to_levels(plane[:1, :1]), dtype)[0, 0]
            return np.full((plane.shape[0] * scale, plane.shape[1] * scale), value, dtype)
        if self.options.alpha == "network":
            grey = upscaler.upscale([np.repeat(plane[..., None], 3, axis=2)])[0]
            return from_levels(to_levels(grey).mean(axis=2), dtype)
        return from_levels(to_levels(bicubic_plane(plane, scale)), dtype)


def bicubic_plane(plane: np.ndarray, scale: int) -> np.ndarray:
    """One ``H x W`` plane (uint8 or uint16) ``scale`` times larger, by FFmpeg's bicubic filter."""
    fmt = "gray16le" if plane.dtype == np.uint16 else "gray"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format=fmt)
    height, width = plane.shape
    return frame.reformat(width=width * scale, height=height * scale, interpolation="BICUBIC").to_ndarray()


def _chunks(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive lists of at most ``size`` frames."""
    chunk: list[Frame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@hookimpl
def register_upscalers(register: StageRegister) -> None:
    register(ESRGANUpscaler)


@hookimpl
def register_engines(register: EngineRegister) -> None:
    register(KerasEngine)
