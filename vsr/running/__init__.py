"""Running files: one driver over executors (this process, local worker processes, Ray).

- :mod:`~vsr.running.inputs`: what to run (files, folders, globs) and each output's name;
- :mod:`~vsr.running.lifecycle`: claim (skip, busy, probe, destination check, lock) and publish;
- :mod:`~vsr.running.units`: what one worker does with one unit;
- :mod:`~vsr.running.executors` and :mod:`~vsr.running.ray`: where units run;
- :mod:`~vsr.running.driver`: the lifecycle in one place, for one file or thousands;
- :mod:`~vsr.running.report`: the report, and what each kind of failure means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from vsr.errors import VsrError
from vsr.plan import RunPlan
from vsr.running.driver import Driver, Progress
from vsr.running.executors import InlineExecutor
from vsr.running.inputs import Item, assign_outputs
from vsr.running.lifecycle import RunResult
from vsr.running.report import Report
from vsr.segments import DEFAULT_POLICY, SegmentPolicy

__all__ = ["Driver", "InlineExecutor", "Item", "Progress", "Report", "RunResult", "upscale_file"]


def upscale_file(
    plan: RunPlan,
    input_path: Path,
    output: Path | None = None,
    *,
    force: bool = False,
    policy: SegmentPolicy = DEFAULT_POLICY,
    settle: float = 0.0,
    on_frame: Callable[[int], None] | None = None,
    log: logging.Logger | None = None,
) -> RunResult:
    """Upscale one file in this process, through the same driver as every run; for library use and benchmarks.

    ``on_frame(n)``: called as each frame is encoded, with the count so far in this run.

    Raises:
        VsrError: the file failed (the report's line), or the run was interrupted.
    """
    log = log or logging.getLogger("vsr")
    items, clashes = assign_outputs([Item(input_path, None)], plan.scale, output)
    if clashes:
        raise VsrError(str(clashes[0].error))
    report = Report(plan.preset)
    count = 0

    def frames(more: int) -> None:
        nonlocal count
        count += more
        if on_frame is not None:
            on_frame(count)

    executor = InlineExecutor(plan, frames, log)
    driver = Driver(plan, executor, force=force, policy=policy, settle=settle, log=log, describe=False)
    driver.run(items, report)
    if report.interrupted is not None:
        raise report.interrupted
    entry = report.entries[0]
    if entry.status == "failed":
        raise VsrError(entry.error or f"{input_path}: failed", exit_code=entry.code or 1)
    return RunResult(input_path, items[0].output or Path(), entry.status, entry.frames, entry.seconds, entry.resumed_at)
