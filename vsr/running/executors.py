"""Executors: where units run. This process (inline), one process per local device (``--devices``), or Ray.

An executor only runs :func:`vsr.running.units.run_unit` and hands back a
:class:`concurrent.futures.Future`, as ``concurrent.futures`` executors do;
the driver (:mod:`vsr.running.driver`) owns everything else. vsr does not
schedule: it feeds an executor a few units more than it has ``slots``, in
input order, and the executor (a process pool, or Ray) places them.

The inline executor runs each unit as it is submitted, in this process, and
runs a video as one unit *in order* (:attr:`Executor.in_order`): segments are
closed by work done and carry the temporal smoother's exact history from one
to the next. The others get videos cut in advance, to run at once.

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
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from vsr.errors import Interrupted, UsageError, WriteError
from vsr.plan import RunPlan
from vsr.running.units import UnitRequest, UnitResult, run_unit


class WorkerLost(WriteError):
    """A worker process died (killed, out of memory) with a unit in hand: a resource failed, the rest is kept."""


class Executor(Protocol):
    """Runs units somewhere: this process, local processes, a Ray cluster."""

    #: How many units run at once.
    slots: int
    #: In words, for the log.
    description: str
    #: Videos run as one unit in order (segments closed by work done, exact carried state), not cut in advance.
    in_order: bool
    #: Progress is reported frame by frame as units run (else the driver counts a unit's frames when it is back).
    live_progress: bool

    def submit(self, request: UnitRequest) -> Future[UnitResult]: ...

    def error(self, exc: BaseException) -> BaseException:
        """The error a unit raised, unwrapped from the executor's own (:class:`WorkerLost` for a dead worker)."""
        ...

    def close(self, cancel: bool) -> None: ...


class InlineExecutor:
    """Units in this process, one at a time, each run as it is submitted (its future is done on return)."""

    slots = 1
    description = "this process"
    in_order = True
    live_progress = True

    def __init__(
        self, plan: RunPlan, on_frames: Callable[[int], None] | None = None, log: logging.Logger | None = None
    ) -> None:
        self.plan = plan
        self.on_frames = on_frames  # frames encoded since the last call
        self.log = log  # what the stages log to (the caller's logger)

    def submit(self, request: UnitRequest) -> Future[UnitResult]:
        future: Future[UnitResult] = Future()
        seen = 0

        def on_frame(count: int) -> None:
            nonlocal seen
            if self.on_frames is not None:
                self.on_frames(count - seen)
            seen = count

        try:
            future.set_result(run_unit(request, on_frame, self.plan, self.log))
        except Interrupted:
            raise  # the driver stops everything
        except Exception as exc:
            future.set_exception(exc)
        return future

    def error(self, exc: BaseException) -> BaseException:
        return exc

    def close(self, cancel: bool) -> None:
        return None


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
    for name in ("SIGINT", "SIGHUP"):  # the driver decides what an interruption stops
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    logger = logging.getLogger("vsr")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"vsr: [{os.environ['VSR_WORKER']}] %(message)s"))
    handler.addFilter(_Once())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class LocalExecutor:
    """One spawned process per device, each seeing only its device."""

    in_order = False
    live_progress = False

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
