"""``vsr sample``: write a short built-in clip to try vsr on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from vsr.sample import write_sample

log = logging.getLogger("vsr")


def sample(
    output: Annotated[Path, typer.Argument(help="Where to write the clip (.mp4, .mkv, ...).")] = Path("sample.mp4"),
    seconds: Annotated[float, typer.Option(min=0.1, max=600, help="Length in seconds.")] = 2.0,
    width: Annotated[int, typer.Option(min=16, max=3840, help="Width in pixels (even).")] = 192,
    height: Annotated[int, typer.Option(min=16, max=2160, help="Height in pixels (even).")] = 108,
    fps: Annotated[int, typer.Option(min=1, max=240, help="Frames per second.")] = 24,
) -> None:
    """Write a small cartoon-style sample clip with a sound track."""
    write_sample(output, seconds=seconds, width=width, height=height, fps=fps)
    log.info("wrote %s (%gs, %dx%d @ %d fps, H.264 + AAC)", output, seconds, width, height, fps)
