"""Many workers: one process per local device (``--devices``), or tasks on a Ray cluster (``--ray``).

The driver (this process) keeps everything that makes cron runs safe: it
skips done outputs, takes each output's lock (so a second run, local or on
another machine, reports the output ``busy``), cuts videos into units
(:mod:`vsr.units`), records finished units in the work folder's manifest,
joins the segments once all are done, publishes the output atomically and
writes the report. Workers only upscale units: an *engine* runs
:func:`vsr.units.run_unit` somewhere and hands back a
:class:`concurrent.futures.Future`. vsr does not schedule: it feeds the engine
a few units more than it has workers, in input order, and the engine
(a process pool, or Ray) places them.

A worker that dies loses only its unit: Ray retries the task on another
worker; a local pool cannot replace a dead process, so the files then in
flight fail with one line and keep their finished units for the next run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vsr.batch import Entry, Item, Report, failure
from vsr.errors import Interrupted, UsageError, VsrError, WriteError
from vsr.pipeline import build_pipeline
from vsr.plan import RunPlan
from vsr.run import Claim, RunResult, claim, publish, segmenter_of
from vsr.segments import SegmentedEncoder, SegmentPolicy, WorkDir
from vsr.units import PRIME_FRAMES, Unit, UnitRequest, UnitResult, cut_units, cuts_digest, run_unit


class WorkerLost(VsrError):
    """A worker process died (killed, out of memory) with a unit in hand."""


class Engine(Protocol):
    """Runs units somewhere: local processes, a Ray cluster."""

    #: How many units run at once.
    slots: int
    #: In words, for the log.
    description: str

    def submit(self, request: UnitRequest) -> Future[UnitResult]: ...

    def error(self, exc: BaseException) -> BaseException:
        """The error a unit raised, unwrapped from the engine's own (:class:`WorkerLost` for a dead worker)."""
        ...

    def close(self, cancel: bool) -> None: ...


# === Local devices ===


@dataclass(frozen=True)
class Device:
    """One local worker's device: ``gpu`` index (CUDA numbering), or None for the CPU."""

    gpu: int | None
    threads: int = 0
    number: int = 0

    @property
    def label(self) -> str:
        return f"gpu{self.gpu}" if self.gpu is not None else f"cpu{self.number}"


def visible_gpus() -> list[int]:
    """The NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` when set), without importing a backend."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [int(d) for d in listed.split(",") if d.strip().isdigit()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.stdout.split() if line.strip().isdigit()] if out.returncode == 0 else []


def parse_devices(spec: str | None) -> list[Device] | None:
    """``--devices``: the local workers to start, or None to run in this process.

    ``all`` (the default, None): every GPU when there are several, else this
    process on what there is; ``0,2``: those GPUs; ``cpu``: this process, GPUs
    hidden; ``cpu:N``: N CPU workers sharing the cores.
    """
    spec = (spec or "all").strip().lower()
    if spec == "all":
        gpus = visible_gpus()
        return [Device(g) for g in gpus] if len(gpus) > 1 else None
    if spec == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read when the backend starts, which has not happened yet
        return None
    if spec.startswith("cpu:"):
        count = spec[4:]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise UsageError(f"--devices {spec}: give cpu:N with N from 1 to 256")
        cores = os.cpu_count() or 1
        return [Device(None, max(1, cores // int(count)), n) for n in range(int(count))]
    ids = [part.strip() for part in spec.split(",")]
    if not all(i.isdigit() for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--devices {spec}: give all, cpu, cpu:N, or GPU numbers such as 0,2")
    known = visible_gpus()
    missing = [i for i in ids if int(i) not in known]
    if missing:
        seen = ",".join(map(str, known)) or "none"
        raise UsageError(f"--devices {spec}: no GPU {','.join(missing)} here (visible: {seen})")
    if len(ids) == 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[0]
        return None
    return [Device(int(i)) for i in ids]


class _Once(logging.Filter):
    """A worker says each thing once, not once per unit (an HDR warning, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _start_worker(devices: Any, level: int) -> None:
    """A local worker's first act: take a device, before any backend is imported, and quiet its signals."""
    device: Device = devices.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if device.gpu is None else str(device.gpu)
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # never take the memory of another worker's model
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if device.threads:
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(device.threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "2"
    os.environ["VSR_WORKER"] = device.label
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what an interruption stops
    logger = logging.getLogger("vsr")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"vsr: [{os.environ['VSR_WORKER']}] %(message)s"))
    handler.addFilter(_Once())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class LocalEngine:
    """One spawned process per device, each seeing only its device."""

    def __init__(self, devices: list[Device]) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no backend state inherited
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        level = logging.getLogger("vsr").getEffectiveLevel()
        self.pool = ProcessPoolExecutor(len(devices), context, _start_worker, (queue, level))
        self.slots = len(devices)
        labels = [d.label for d in devices]
        self.description = f"{len(devices)} local workers ({', '.join(labels)})"

    def submit(self, request: UnitRequest) -> Future[UnitResult]:
        return self.pool.submit(run_unit, request)

    def error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, BrokenProcessPool):
            return WorkerLost("a worker process died (killed, or out of memory); run again to resume")
        return exc

    def close(self, cancel: bool) -> None:
        if cancel:
            processes = list(getattr(self.pool, "_processes", {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                with contextlib.suppress(Exception):
                    process.kill()
        else:
            self.pool.shutdown(wait=True)


# === The driver ===


@dataclass
class _File:
    """One claimed output and its units in flight."""

    item: Item
    claimed: Claim
    units: int
    work: WorkDir | None = None
    segmenter: SegmentedEncoder | None = None
    left: int = 0
    frames: int = 0
    started: float = field(default_factory=time.perf_counter)
    error: BaseException | None = None


class Driver:
    """Feeds an engine the units of many files and owns everything else (see the module's docstring)."""

    def __init__(
        self,
        plan: RunPlan,
        engine: Engine,
        *,
        force: bool = False,
        policy: SegmentPolicy,
        prime: int = PRIME_FRAMES,
        settle: float = 0.0,
        log: logging.Logger,
        on_unit: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.plan, self.engine, self.force, self.policy, self.settle = plan, engine, force, policy, settle
        self.prime = prime if plan.stage("smooth") is not None else 0  # only stages with memory need priming
        self.log = log
        self.on_unit = on_unit  # (worker, frames, planned frames added): progress
        self.queue: deque[tuple[_File, Unit | None]] = deque()
        self.running: dict[Future[UnitResult], tuple[_File, Unit | None]] = {}
        self.open: list[_File] = []
        self.per_worker: dict[str, list[float]] = {}

    def run(self, items: list[Item], report: Report) -> None:
        """Upscale ``items``, adding an entry per file to ``report`` (in the items' order)."""
        order = {str(item.input): n for n, item in enumerate(items)}
        first = len(report.entries)
        pending: Iterator[Item] = iter(items)
        try:
            while True:
                while len(self.running) < 2 * self.engine.slots:
                    if self.queue:
                        self._submit(*self.queue.popleft(), report)
                    elif (item := next(pending, None)) is not None:
                        self._start(item, report)
                    else:
                        break
                if not self.running:
                    break
                finished, _ = wait(list(self.running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._collect(future, report)
        except Interrupted as exc:
            report.interrupted = True
            self.engine.close(cancel=True)
            for file in self.open:  # finished units stay for the next run
                file.claimed.job.output.unlink(missing_ok=True)
                file.claimed.lock.release()
                report.entries.append(Entry(str(file.item.input), "interrupted", error=str(exc)))
            self.open.clear()
        except BaseException:
            self.engine.close(cancel=True)  # a bug: stop the workers rather than wait for them
            raise
        else:
            self.engine.close(cancel=False)
        report.entries[first:] = sorted(report.entries[first:], key=lambda e: order.get(e.input, len(order)))
        for worker, (frames, seconds) in sorted(self.per_worker.items()):
            fps = frames / seconds if seconds else 0.0
            self.log.debug("%s: %d frames in %.1f s of work, %.2f fps", worker, frames, seconds, fps)

    # --- files ---

    def _start(self, item: Item, report: Report) -> None:
        try:
            claimed = claim(
                self.plan,
                item.input,
                item.output,
                force=self.force,
                make_parent=item.output_dir is not None,
                settle=self.settle,
                log=self.log,
            )
        except Interrupted:
            raise
        except Exception as exc:  # one file's failure never ends the run
            self._record(report, failure(str(item.input), exc))
            return
        if isinstance(claimed, RunResult):
            self._record(report, Entry.of(claimed))
            return
        try:
            units, work, segmenter = self._cut(claimed)
        except Interrupted:
            claimed.lock.release()
            raise
        except Exception as exc:
            claimed.lock.release()
            self._record(report, failure(str(item.input), exc))
            return
        file = _File(item, claimed, len(units), work, segmenter, left=len(units))
        self.open.append(file)
        planned = sum(u.frames for u in units if u is not None) or (claimed.media.frames or 0)
        if self.on_unit is not None:
            self.on_unit("", 0, planned)
        if not file.left:  # every unit was done by an earlier run
            self._finish(file, report)
        for unit in units:
            self.queue.append((file, unit))

    def _cut(self, claimed: Claim) -> tuple[list[Unit | None], WorkDir | None, SegmentedEncoder | None]:
        """The units still to do, the work folder, the encoder that joins them (one unit, no folder: no cut)."""
        job, media = claimed.job, claimed.media
        pipeline = build_pipeline(self.plan, job)
        segmenter = segmenter_of(pipeline.encoder) if not media.is_image else None
        times = pipeline.stages[0].frame_times() if segmenter is not None else None
        if segmenter is None or not times:
            return [None], None, None
        units = cut_units(times, media.time_base, self.policy, self.prime)
        identity = {"input": claimed.before, "settings": self.plan.settings, "units": cuts_digest(units)}
        work = WorkDir(job.final_output, identity, job.log, in_order=False)
        work.open()
        done = {int(e["first_index"]) for e in work.entries}
        if done:
            job.log.info("resuming: %d of %d units already done", len(done), len(units))
        return [u for u in units if u.first_index not in done], work, segmenter

    def _submit(self, file: _File, unit: Unit | None, report: Report) -> None:
        if file.error is not None:  # another unit of this file failed: the rest is not worth doing
            self._done_with(file, report)
            return
        job = file.claimed.job
        request = UnitRequest(
            self.plan.source,
            self.plan.settings,
            job.input,
            job.final_output,
            job.output,
            file.claimed.media,
            dict(job.metadata),
            unit,
            file.work.dir if file.work is not None else Path(),
        )
        try:
            self.running[self.engine.submit(request)] = (file, unit)
        except Exception as exc:  # the engine itself failed (a local pool whose worker died)
            file.error = file.error or self.engine.error(exc)
            self._done_with(file, report)

    def _collect(self, future: Future[UnitResult], report: Report) -> None:
        file, unit = self.running.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # the unit's own error, or the engine's for a lost worker
            error = self.engine.error(exc)
            if isinstance(error, WorkerLost) and file.error is None:
                self.log.warning("%s: %s", file.item.input, error)
            file.error = file.error or error
        else:
            if result.segment is not None and file.work is not None:
                file.work.add(result.segment, {})
            file.frames += result.frames
            totals = self.per_worker.setdefault(result.worker, [0, 0.0])
            totals[0] += result.frames
            totals[1] += result.seconds
            where = f"unit {unit.number + 1}/{file.units}" if unit is not None else "whole file"
            fps = result.frames / result.seconds if result.seconds else 0.0
            self.log.debug(
                "%s, %s: %d frames on %s, %.2f fps", file.item.input.name, where, result.frames, result.worker, fps
            )
            if self.on_unit is not None:
                self.on_unit(result.worker, result.frames, 0)
        self._done_with(file, report)

    def _done_with(self, file: _File, report: Report) -> None:
        """One unit of ``file`` is back (or dropped); a failed file's queued units are dropped too."""
        file.left -= 1
        if file.error is not None:
            kept = deque(entry for entry in self.queue if entry[0] is not file)
            file.left -= len(self.queue) - len(kept)
            self.queue = kept
        if file.left == 0:
            self._finish(file, report)

    def _finish(self, file: _File, report: Report) -> None:
        """All units are back: join and publish, or fail the file."""
        job = file.claimed.job
        frames = sum(int(e["frames"]) for e in file.work.entries) if file.work is not None else file.frames
        try:
            if file.error is not None:
                raise file.error
            if file.work is not None and file.segmenter is not None:
                file.segmenter.join(file.work.segments(), job.output)
            changed = publish(self.plan, file.claimed, frames)
        except Interrupted as exc:
            self._record(report, Entry(str(job.input), "interrupted", str(job.final_output), str(exc)))
            raise
        except (WorkerLost, WriteError) as exc:  # the finished units stay for the next run
            self._record(report, Entry(str(job.input), "failed", str(job.final_output), str(exc)))
        except Exception as exc:
            if file.work is not None:  # the input or the settings failed: resuming would fail the same way
                file.work.remove()
            self._record(report, failure(str(job.input), exc))
        else:
            if file.work is not None:
                file.work.remove()
            seconds = time.perf_counter() - file.started
            status, reason = ("busy", "the input changed while it was being upscaled") if changed else ("done", "")
            result = RunResult(job.input, job.final_output, status, frames, seconds, reason=reason)
            self._record(report, Entry.of(result))
        finally:
            self.open.remove(file)
            job.output.unlink(missing_ok=True)
            file.claimed.lock.release()

    def _record(self, report: Report, entry: Entry) -> None:
        report.entries.append(entry)
        if entry.status == "failed":
            self.log.error("failed: %s", entry.error)
        elif entry.status == "done":
            self.log.info("done: %s -> %s (%d frames, %.1f s)", entry.input, entry.output, entry.frames, entry.seconds)
        else:
            self.log.info("%s: %s (%s)", entry.status, entry.input, entry.error)
