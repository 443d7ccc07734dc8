"""``vsr upscale``: make a video (or image) larger with an ESRGAN-family model (x4 by default)."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from vsr.cli.progress import Progress
from vsr.errors import UsageError, shown
from vsr.plan import plan_run
from vsr.plugins import load_registry
from vsr.running.driver import Driver
from vsr.running.executors import Executor, InlineExecutor, LocalExecutor, parse_devices
from vsr.running.inputs import assign_outputs, collect_inputs
from vsr.running.report import Report
from vsr.running.units import PRIME_FRAMES
from vsr.segments import CHECKPOINT_SECONDS, SEGMENT_SECONDS, SegmentPolicy

log = logging.getLogger("vsr")
#: Default --settle in batches: an input touched within this many seconds may still be being copied.
SETTLE_SECONDS = 60.0


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
    output_raw: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file for one input (default: INPUT.x4.EXT beside it); for several, a folder that "
            "mirrors the inputs' tree (a name ending in / is a folder, made if missing).",
            show_default=False,
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
            help="Which video track to upscale, counted from 0 among the video tracks (FFmpeg's stream specifier "
            "v:N); default: the default one, "
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
    output = Path(output_raw) if output_raw else None
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
    folder = output is not None and (output_raw.endswith(("/", os.sep)) or output.is_dir())
    if output is not None and batch and output.exists() and not output.is_dir():
        raise UsageError(f"{shown(output)}: with several inputs, -o must be a folder")
    out_dir = output if batch or folder else None
    policy = SegmentPolicy(checkpoint=checkpoint, max_seconds=segment)
    wait = settle if settle is not None else (SETTLE_SECONDS if batch else 0.0)

    if report is not None and not (report.parent.is_dir() and os.access(report.parent, os.W_OK | os.X_OK)):
        raise UsageError(f"--report {shown(report)}: its folder does not exist or is not writable")
    result_report = Report(plan.preset)
    found, missing = collect_inputs(inputs, out_dir, include or [], exclude or [])
    items, clashes = assign_outputs(found, plan.scale, None if out_dir is not None else output)
    if clashes and not batch:  # one file whose output cannot be named: a usage error, like a bad -o
        raise UsageError(str(clashes[0].error))
    result_report.entries.extend(missing + clashes)
    for entry in missing + clashes:
        log.error("%s", entry.error)
    progress = Progress("upscaling", quiet=quiet)
    executor: Executor
    try:
        if ray is not None:
            from vsr.running.ray import RayExecutor  # Ray is an optional extra

            executor = RayExecutor(ray)
        elif workers:
            executor = LocalExecutor(workers)
        else:
            executor = InlineExecutor(plan, progress.advance, job_log)  # per-file lines: quiet in a batch
        if batch or not isinstance(executor, InlineExecutor):
            log.info("%d files to consider, on %s", len(items) + len(clashes), executor.description)
        driver = Driver(
            plan,
            executor,
            force=force,
            policy=policy,
            prime=prime_frames,
            settle=wait,
            log=log if batch else job_log,
            progress=progress,
            describe=not quiet,
        )
        driver.run(items, result_report)
    finally:
        progress.close()
        if report is not None:
            result_report.write(report)
    if batch:
        counts = result_report.counts()
        log.info("batch: %s", ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do")
    elif result_report.interrupted is None and result_report.entries:
        entry = result_report.entries[-1]
        if entry.status == "done":
            resumed = f", resumed at frame {entry.resumed_at}" if entry.resumed_at else ""
            log.info(
                "wrote %s: %d frames in %.1f s (%.2f fps)%s",
                entry.output,
                entry.frames,
                entry.seconds,
                entry.fps,
                resumed,
            )
        elif entry.status != "failed":
            log.info("%s: %s (%s)", entry.status, entry.output, entry.error)
    if result_report.interrupted is not None:
        raise result_report.interrupted
    code = result_report.exit_code()
    if code:
        raise typer.Exit(code)
