"""``vsr upscale``: make a video (or image) larger with an ESRGAN-family model (x4 by default)."""

from __future__ import annotations

import glob
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vsr.batch import Entry, Item, Report, assign_outputs, collect_inputs, run_batch
from vsr.errors import Interrupted, UsageError, VsrError
from vsr.plan import plan_run
from vsr.plugins import load_registry
from vsr.ray_engine import RayEngine
from vsr.run import RunResult, upscale_file
from vsr.scaleout import Driver, LocalEngine, parse_devices
from vsr.segments import CHECKPOINT_SECONDS, SEGMENT_SECONDS, SegmentPolicy
from vsr.stage import MediaInfo
from vsr.units import PRIME_FRAMES

log = logging.getLogger("vsr")
#: Default --settle in batches: an input touched within this many seconds may still be being copied.
SETTLE_SECONDS = 60.0


class _Reporter:
    """Rich progress on a terminal; a few plain lines otherwise (cron mail, logs), or none (``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.total: int | None = None
        self.next_report = 0.0
        self.start = 0.0
        self.first = 0

    def on_start(self, media: MediaInfo, output: Path, start_index: int) -> None:
        self.total = media.frames
        self.first = start_index
        rate = f" @ {float(media.frame_rate):.3g} fps" if media.frame_rate and not media.is_image else ""
        frames = f", {media.frames} frames" if media.frames else ""
        if not self.quiet:
            log.info("%dx%d %s%s%s -> %s", media.width, media.height, media.codec_name, rate, frames, output)
        self.start = time.perf_counter()
        self.next_report = 60.0
        if self.tty:
            self.progress = Progress(
                TextColumn(f"upscaling {output.name}" if self.quiet else "upscaling"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]} fps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("upscale", total=self.total, completed=start_index, fps="-")

    def on_frame(self, count: int) -> None:
        elapsed = time.perf_counter() - self.start
        fps = (count - self.first) / elapsed if elapsed > 0 else 0.0
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=count, fps=f"{fps:.2f}")
        elif not self.quiet and elapsed >= self.next_report:
            self.next_report = elapsed + 60
            total = f"/{self.total}" if self.total else ""
            log.info("frame %d%s, %.2f fps", count, total, fps)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class _UnitProgress:
    """Progress of a run on several workers, as units come back: a bar on a terminal, else a line a minute."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.total = self.done = 0
        self.start = time.perf_counter()
        self.next_report = 60.0
        self.progress: Progress | None = None
        self.task = None
        if sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("upscaling"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]} fps"),
                TimeElapsedColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("upscale", total=None, fps="-")

    def update(self, worker: str, frames: int, planned: int) -> None:
        self.total += planned
        self.done += frames
        elapsed = time.perf_counter() - self.start
        fps = f"{self.done / elapsed:.2f}" if elapsed > 0 else "-"
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=self.done, total=self.total or None, fps=fps)
        elif not self.quiet and elapsed >= self.next_report:
            self.next_report = elapsed + 60
            log.info("%d/%d frames, %s fps", self.done, self.total, fps)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _is_batch(inputs: list[str]) -> bool:
    if len(inputs) != 1:
        return True
    path = Path(inputs[0]).expanduser()
    return path.is_dir() or (not path.exists() and glob.has_magic(inputs[0]))


def upscale(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Videos or images, folders (scanned recursively), or quoted globs.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file for one input (default: INPUT.x4.EXT beside it); for several, a folder that "
            "mirrors the inputs' tree.",
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", "-p", help="Preset name (see `vsr presets`) or .toml path.")
    ] = "default",
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name (see `vsr models`) or a .pth/.safetensors/.param file."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a preset key: section.key=value, e.g. upscale.tile=128."),
    ] = None,
    smooth: Annotated[
        bool | None,
        typer.Option("--smooth/--no-smooth", help="Temporal smoothing on or off (default: as the preset says)."),
    ] = None,
    video_track: Annotated[
        int | None,
        typer.Option(
            "--video-track",
            help="Which video track to upscale, from 0 (as ffmpeg's -map 0:v:N); default: the default one, "
            "else the first. The others are copied as they are.",
            min=0,
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", "--overwrite", help="Redo outputs that are done, and replace files in the way."),
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Folder scans: only files matching this glob (repeatable), e.g. '*.mkv'."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files matching this glob (repeatable).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a JSON report of every input's outcome here.")
    ] = None,
    segment: Annotated[
        float,
        typer.Option(help="Longest resumable segment, in seconds of video.", min=0.05),
    ] = SEGMENT_SECONDS,
    checkpoint: Annotated[
        float,
        typer.Option(
            help="Seconds of work after which a segment is closed and kept: about the most a crash or kill costs.",
            min=0.0,
        ),
    ] = CHECKPOINT_SECONDS,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            help="Where to upscale: all (every GPU when there are several, one worker process each; else this "
            "process), GPU numbers such as 0,2, cpu, or cpu:N (N CPU worker processes). Files and the segments of "
            "long files are shared out among the workers.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Send the work to a Ray cluster as tasks: its address (host:port, ray://host:port) or auto (the "
            "cluster this machine belongs to). Inputs and outputs must be on a filesystem every node shares.",
            show_default=False,
        ),
    ] = None,
    prime_frames: Annotated[
        int,
        typer.Option(
            help="With several workers and temporal smoothing: frames before each segment upscaled (not encoded) "
            "to prime the smoother.",
            min=0,
        ),
    ] = PRIME_FRAMES,
    settle: Annotated[
        float | None,
        typer.Option(
            help="An input modified within this many seconds is still being written: 'busy', retried next run "
            f"(default {SETTLE_SECONDS:g} for folders, globs and several inputs; 0 for one named file).",
            min=0.0,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Upscale videos and images with ESRGAN (4x by default): one file, or folders in batch.

    Finished outputs are skipped, interrupted ones resume, overlapping runs share the work.
    """
    if ray is not None and devices is not None:
        raise UsageError("--ray and --devices exclude each other: the Ray cluster decides the devices")
    workers = parse_devices(devices) if ray is None else None  # before anything starts a backend
    registry = load_registry()
    plan = plan_run(
        registry, preset, overrides=set_, model=model, smooth=smooth, video_track=video_track
    )  # everything checked, once
    batch = _is_batch(inputs)
    quiet = batch and not logging.getLogger("vsr").isEnabledFor(logging.DEBUG)
    job_log = logging.getLogger("vsr.job")
    job_log.setLevel(logging.WARNING if quiet else logging.NOTSET)
    reporter = _Reporter(quiet=quiet)
    if output is not None and batch and output.exists() and not output.is_dir():
        raise UsageError(f"{output}: with several inputs, -o must be a folder")
    out_dir = output if batch or (output is not None and output.is_dir()) else None
    policy = SegmentPolicy(checkpoint=checkpoint, max_seconds=segment)
    wait = settle if settle is not None else (SETTLE_SECONDS if batch else 0.0)

    def process(item: Item) -> RunResult:
        try:
            return upscale_file(
                plan,
                item.input,
                item.output,
                force=force,
                make_parent=item.output_dir is not None,
                policy=policy,
                settle=wait,
                on_start=reporter.on_start,
                on_frame=reporter.on_frame,
                log=job_log,
            )
        finally:
            reporter.close()

    result_report = Report(plan.preset)
    found, missing = collect_inputs(inputs, out_dir, include or [], exclude or [])
    items, clashes = assign_outputs(found, plan.scale, None if out_dir is not None else output)
    if clashes and not batch:  # one file whose output cannot be named: a usage error, like a bad -o
        raise UsageError(str(clashes[0].error))
    result_report.entries.extend(missing + clashes)
    for entry in missing + clashes:
        log.error("failed: %s", entry.error)
    try:
        if ray is not None or workers:
            engine = RayEngine(ray) if ray is not None else LocalEngine(workers or [])
            log.info("%d files to consider, on %s", len(items) + len(clashes), engine.description)
            progress = _UnitProgress(quiet)
            driver = Driver(
                plan,
                engine,
                force=force,
                policy=policy,
                prime=prime_frames,
                settle=wait,
                log=job_log if not batch else log,
                on_unit=progress.update,
            )
            try:
                driver.run(items, result_report)
            finally:
                progress.close()
        elif batch:
            log.info("%d files to consider", len(items) + len(clashes))
            run_batch(items, result_report, process, log)
        elif items:
            result = process(items[0])
            result_report.entries.append(Entry.of(result))
            if result.status == "done":
                log.info(
                    "wrote %s: %d frames in %.1f s (%.2f fps)%s",
                    result.output,
                    result.frames,
                    result.seconds,
                    result.fps,
                    f", resumed at frame {result.resumed_at}" if result.resumed_at else "",
                )
            else:
                log.info("%s: %s (%s)", result.status, result.output, result.reason)
    except VsrError as exc:
        result_report.entries.append(
            Entry(inputs[0], "interrupted" if isinstance(exc, Interrupted) else "failed", error=str(exc))
        )
        result_report.interrupted = isinstance(exc, Interrupted)
        raise
    finally:
        if report is not None:
            result_report.write(report)
    if batch:
        counts = result_report.counts()
        log.info("batch: %s", ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do")
    code = result_report.exit_code()
    if code:
        raise typer.Exit(code)
