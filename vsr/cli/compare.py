"""``vsr compare``: a picture (and a clip) to judge an upscale by eye."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from vsr.errors import UsageError

log = logging.getLogger("vsr")


def compare(
    source: Annotated[Path, typer.Argument(help="The input video (low resolution).")],
    output: Annotated[Path, typer.Argument(help="The upscaled video.")],
    picture: Annotated[Path, typer.Option("--output", "-o", help="Where to write the PNG.")] = Path("compare.png"),
    at: Annotated[
        list[str] | None,
        typer.Option("--at", help="A time to show, in seconds or [HH:]MM:SS (repeatable); default 25/50/75 %."),
    ] = None,
    unsmoothed: Annotated[
        Path | None, typer.Option(help="The same upscale without smoothing: a column between input and output.")
    ] = None,
    video: Annotated[
        bool, typer.Option("--video", help="Also write a side-by-side clip (the PNG's name, .mp4) to see flicker.")
    ] = False,
    seconds: Annotated[float, typer.Option(min=0.1, max=600, help="Length of the --video clip.")] = 5.0,
) -> None:
    """Write a PNG of SOURCE (bicubic) beside OUTPUT at a few times, with 2x crops of the most detailed part."""
    from vsr.compare import Video, duration, parse_time, side_by_side, still
    from vsr.media import write_png

    if picture.suffix.lower() != ".png":
        raise UsageError(f"{picture}: the picture is written as PNG, so its name must end in .png")
    for path in (source, output, unsmoothed):
        if path is not None and path.resolve() == picture.resolve():
            raise UsageError(f"{picture}: would overwrite an input")
    from vsr.pairing import check_pair

    for made in (output, unsmoothed):
        if made is not None:
            check_pair(source, made)
    outputs = [Video(unsmoothed, "unsmoothed")] if unsmoothed else []
    outputs.append(Video(output, "output"))
    length = duration(output)
    times = [parse_time(t) for t in at] if at else [length * f for f in (0.25, 0.5, 0.75)]
    late = [t for t in times if length and t > length]
    if late:
        raise UsageError(f"--at {late[0]:g}: past the end of {output} ({length:.2f} s)")
    write_png(picture, still(source, outputs, times))
    columns = " | ".join(["input (bicubic)", *(v.label for v in outputs)])
    shown = ", ".join(f"{t:.2f} s" for t in times)
    log.info("wrote %s: %s at %s; rows: whole frame, 2x crop of the boxed region", picture, columns, shown)
    if video:
        clip = picture.with_suffix(".mp4")
        count = side_by_side(source, outputs, clip, times[0] if at else 0.0, seconds)
        log.info("wrote %s: %d frames, %s", clip, count, columns)
