"""``vsr upscale``: make a video (or image) larger with an ESRGAN-family model (x4 by default)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vsr.plugins import load_registry
from vsr.presets import resolve_preset
from vsr.run import upscale_file
from vsr.stage import MediaInfo

log = logging.getLogger("vsr")


class _Reporter:
    """Rich progress on a terminal; a few plain lines otherwise (cron mail, logs)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.progress: Progress | None = None
        self.task = None
        self.total: int | None = None
        self.next_report = 0.0
        self.start = 0.0

    def on_start(self, media: MediaInfo, output: Path) -> None:
        self.total = media.frames
        rate = f" @ {float(media.frame_rate):.3g} fps" if media.frame_rate and not media.is_image else ""
        frames = f", {media.frames} frames" if media.frames else ""
        log.info("%dx%d %s%s%s -> %s", media.width, media.height, media.codec_name, rate, frames, output)
        self.start = time.perf_counter()
        if self.tty:
            self.progress = Progress(
                TextColumn("upscaling"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]} fps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("upscale", total=self.total, fps="-")

    def on_frame(self, count: int) -> None:
        elapsed = time.perf_counter() - self.start
        fps = count / elapsed if elapsed > 0 else 0.0
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=count, fps=f"{fps:.2f}")
        elif elapsed >= self.next_report:
            self.next_report = elapsed + 60
            total = f"/{self.total}" if self.total else ""
            log.info("frame %d%s, %.2f fps", count, total, fps)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def upscale(
    input: Annotated[Path, typer.Argument(help="Video or image to upscale.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output file (default: INPUT.x4.EXT beside the input; x2 for a x2 model)."),
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", "-p", help="Preset name (see `vsr presets`) or .toml path.")
    ] = "default",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a preset key: section.key=value, e.g. upscale.tile=128."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name (see `vsr models`) or a .pth/.safetensors/.param file."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
    smooth: Annotated[
        bool | None,
        typer.Option("--smooth/--no-smooth", help="Temporal smoothing on or off (default: as the preset says)."),
    ] = None,
) -> None:
    """Upscale INPUT 4x with ESRGAN, keeping audio, subtitles, timestamps and colour."""
    registry = load_registry()
    overrides = list(set_ or [])
    if model is not None:
        overrides.insert(0, f"upscale.model={json.dumps(model)}")
    if smooth is not None:
        overrides.insert(0, f"smooth.enabled={'true' if smooth else 'false'}")
    chosen = resolve_preset(registry, preset).with_overrides(overrides)
    reporter = _Reporter()
    try:
        result = upscale_file(
            registry,
            chosen,
            input,
            output,
            overwrite=overwrite,
            on_start=reporter.on_start,
            on_frame=reporter.on_frame,
        )
    finally:
        reporter.close()
    log.info("wrote %s: %d frames in %.1f s (%.2f fps)", result.output, result.frames, result.seconds, result.fps)
