"""``vsr metrics``: flicker, ghosting and fidelity of an upscaled video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vsr.errors import VsrError
from vsr.metrics import StabilityReport
from vsr.pairing import by_time, check_pair


def metrics(
    original: Annotated[Path, typer.Argument(help="The input video (low resolution).")],
    upscaled: Annotated[Path, typer.Argument(help="The upscaled video to measure.")],
    unsmoothed: Annotated[
        Path | None, typer.Option(help="The same upscale without smoothing, to measure ghosting.")
    ] = None,
    reference: Annotated[Path | None, typer.Option(help="A ground-truth video at the output size (PSNR/SSIM).")] = None,
    static_threshold: Annotated[
        float, typer.Option(help="Input change (8-bit levels) still counted as static.")
    ] = StabilityReport.static_threshold,
    occlusion_threshold: Annotated[
        float, typer.Option(help="Motion-compensated input error (8-bit levels) above which a pixel is occluded.")
    ] = StabilityReport.occlusion_threshold,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    scale: Annotated[
        int | None, typer.Option(help="The model's scale: refuse a pair of another ratio (default: any whole one).")
    ] = None,
) -> None:
    """Measure flicker (still areas), motion-compensated flicker, ghosting and PSNR/SSIM of UPSCALED.

    Frames are paired by time; a pair that is not an input and its upscale is refused.
    """
    check_pair(original, upscaled, scale)
    extras = {name: path for name, path in (("unsmoothed", unsmoothed), ("reference", reference)) if path}
    for path in extras.values():
        check_pair(original, path, scale)
    report = StabilityReport(static_threshold=static_threshold, occlusion_threshold=occlusion_threshold)
    for _, upscaled_frame, (original_frame, *others) in by_time(upscaled, original, *extras.values()):
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
