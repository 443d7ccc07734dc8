"""``vsr metrics``: flicker, ghosting and fidelity of an upscaled video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vsr.errors import VsrError
from vsr.media import open_input, to_rgb, video_stream
from vsr.metrics import StabilityReport


def _frames(path: Path):  # noqa: ANN202 - a generator of RGB arrays
    with open_input(path) as container:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield to_rgb(frame)[0]


def metrics(
    original: Annotated[Path, typer.Argument(help="The input video (low resolution).")],
    upscaled: Annotated[Path, typer.Argument(help="The upscaled video to measure.")],
    unsmoothed: Annotated[
        Path | None, typer.Option(help="The same upscale without smoothing, to measure ghosting.")
    ] = None,
    reference: Annotated[Path | None, typer.Option(help="A ground-truth video at the output size (PSNR/SSIM).")] = None,
    static_threshold: Annotated[float, typer.Option(help="Input change (8-bit levels) still counted as static.")] = 2.0,
    occlusion_threshold: Annotated[
        float, typer.Option(help="Motion-compensated input error (8-bit levels) above which a pixel is occluded.")
    ] = 8.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure flicker (still areas), motion-compensated flicker, ghosting and PSNR/SSIM of UPSCALED."""
    report = StabilityReport(static_threshold=static_threshold, occlusion_threshold=occlusion_threshold)
    extras = {name: _frames(path) for name, path in (("unsmoothed", unsmoothed), ("reference", reference)) if path}
    for original_frame, upscaled_frame, *others in zip(
        _frames(original), _frames(upscaled), *extras.values(), strict=False
    ):
        report.add(original_frame, upscaled_frame, **dict(zip(extras, others, strict=True)))
    if report.frames == 0:
        raise VsrError(f"{upscaled}: no frames to compare")
    summary = report.summary()
    if as_json:
        print(json.dumps(summary))
        return
    for key, value in summary.items():
        shown = "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        print(f"{key:10} {shown}")
