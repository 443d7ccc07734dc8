"""Upscale one file: pick the output name, run the pipeline, publish atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vsr.errors import UsageError, VsrError
from vsr.media import IMAGE_SUFFIXES
from vsr.pipeline import build_pipeline
from vsr.presets import Preset
from vsr.registry import Registry
from vsr.stage import Job, MediaInfo

#: Containers whose suffix the default output keeps; others become .mkv, which holds any stream.
KEEP_SUFFIXES = {".mp4", ".m4v", ".mkv", ".mov", ".webm"}


@dataclass
class RunResult:
    input: Path
    output: Path
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def default_output(path: Path, scale: int = 4) -> Path:
    """``clip.mp4`` -> ``clip.x4.mp4`` beside it; never the input itself."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix not in KEEP_SUFFIXES:
        suffix = ".mkv"
    return path.with_name(f"{path.stem}.x{scale}{suffix}")


def partial_path(output: Path) -> Path:
    """Hidden temporary name beside ``output``, keeping its suffix so FFmpeg picks the same format."""
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


def check_output(input_path: Path, output: Path, overwrite: bool) -> None:
    if output.resolve() == input_path.resolve() or (output.exists() and output.samefile(input_path)):
        raise UsageError(f"{output}: output would overwrite the input; choose another -o")
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; give a file name")
    if output.exists() and not overwrite:
        raise UsageError(f"{output}: already exists (use --overwrite to replace it)")
    parent = output.parent
    if not parent.is_dir():
        raise VsrError(f"{parent}: output directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VsrError(f"{parent}: output directory is not writable")
    in_image = input_path.suffix.lower() in IMAGE_SUFFIXES
    out_image = output.suffix.lower() in IMAGE_SUFFIXES
    if out_image and not in_image:
        raise UsageError(f"{output}: image output needs an image input; use a video suffix such as .mp4 or .mkv")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upscale_file(
    registry: Registry,
    preset: Preset,
    input_path: Path,
    output: Path | None = None,
    *,
    overwrite: bool = False,
    on_start: Callable[[MediaInfo, Path], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> RunResult:
    """Upscale ``input_path`` into ``output`` (default: :func:`default_output`).

    The output appears under its final name only once complete: frames go to
    a hidden ``.partial`` file beside it, renamed into place at the end and
    removed on any failure or interruption.
    """
    named = output is not None
    output = output if output is not None else default_output(input_path)
    job = Job(input=input_path, output=partial_path(output), final_output=output, registry=registry)
    pipeline = build_pipeline(registry, preset, job)  # validates options, probes the input; writes nothing
    scale = next((s.scale for s in pipeline.stages if isinstance(getattr(s, "scale", None), int)), 4)
    if not named and scale != 4:  # the default name says the model's real factor: clip.x2.mp4
        output = job.final_output = default_output(input_path, scale)
        job.output = partial_path(output)
    tmp = job.output
    check_output(input_path, output, overwrite)
    if job.media is not None and job.media.is_image and output.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(
            f"{input_path} is a still image: give an image output such as {default_output(input_path, scale)}"
        )
    if on_start is not None and job.media is not None:
        on_start(job.media, output)
    start = time.perf_counter()
    count = 0
    try:
        for _ in pipeline.frames():
            count += 1
            if on_frame is not None:
                on_frame(count)
        if not tmp.exists():
            raise VsrError(f"{output}: the encoder wrote no file")
        _fsync(tmp)  # the data is on disk before the name says the file is complete
        os.replace(tmp, output)
    except OSError as exc:
        raise VsrError(f"{output}: cannot write: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return RunResult(input_path, output, count, time.perf_counter() - start)
