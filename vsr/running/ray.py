"""The ``--ray`` executor: units as Ray tasks on an existing cluster (the optional ``vsr[ray]`` extra).

Ray places the tasks (``num_gpus=1`` each on a cluster with GPUs, else
``num_cpus``) and retries a task whose worker or node died; vsr only cuts the
work and joins it (:mod:`vsr.running.driver`). Every node must see the inputs,
outputs and model files at the same paths (a shared filesystem) and run the
same vsr, plugins and models: a worker whose plan hashes differently refuses
its unit (:func:`vsr.running.units.worker_plan`). A worker process keeps its plan and
built network for the units that follow (``max_calls=0``).
"""

from __future__ import annotations

import logging
import os
import socket
from concurrent.futures import Future
from typing import Any

from vsr.backend import quiet_native_stderr
from vsr.errors import UsageError, VsrError
from vsr.running.executors import WorkerLost
from vsr.running.units import UnitRequest, UnitResult, run_unit

#: Times Ray reruns a unit whose worker or node died before giving up on it.
RETRIES = 3
#: Environment a task needs from the driver: plugins, the model cache, the backend.
FORWARDED = ("VSR_PLUGINS", "VSR_DISABLE_PLUGINS", "VSR_CACHE_DIR", "VSR_DEBUG", "KERAS_BACKEND", "KERAS_HOME")


def _ray_unit(request: UnitRequest, threads: int) -> UnitResult:
    """:func:`vsr.running.units.run_unit` in a Ray worker: the backend's threads limited to the task's CPUs first."""
    if threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return run_unit(request)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address where nothing listens (Ray itself would retry for minutes)."""
    if address == "auto":
        return  # Ray finds this machine's cluster, or says at once that there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address}: give auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise VsrError(
            f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            "`ray start --head`, or give its address"
        ) from None


class RayExecutor:
    """Units as tasks on the Ray cluster at ``address`` (``auto``: the one this machine belongs to).

    A Ray cluster runs any code that reaches its ports, with no authentication: it must be reachable only from
    trusted machines (bound to a private interface, its ports firewalled), as Ray's own documentation says.
    """

    in_order = False
    live_progress = False

    def __init__(self, address: str, cpus_per_unit: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--ray needs Ray: pip install 'vsr[ray]'") from None
        self.ray = ray
        _check_reachable(address)
        env = {name: os.environ[name] for name in FORWARDED if name in os.environ}
        try:
            with quiet_native_stderr():  # Ray's C++ start-up lines; failures come back as exceptions
                ray.init(
                    address=address,
                    runtime_env={"env_vars": env},
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    configure_logging=True,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VsrError(f"--ray {address}: cannot connect to a Ray cluster: {first}") from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            self.options: dict[str, Any] = {"num_gpus": 1}
            self.slots = gpus
            threads = 0
        else:
            self.options = {"num_cpus": cpus_per_unit}
            self.slots = max(1, int(resources.get("CPU", 1)) // cpus_per_unit)
            threads = cpus_per_unit
        self.threads = threads
        self.remote = ray.remote(max_retries=RETRIES, max_calls=0)(_ray_unit)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        what = f"{gpus} GPUs" if gpus else f"{int(resources.get('CPU', 0))} CPUs"
        self.description = f"Ray cluster at {address}: {nodes} nodes, {what}, {self.slots} units at a time"
        self.refs: set[Any] = set()

    def submit(self, request: UnitRequest) -> Future[UnitResult]:
        ref = self.remote.options(**self.options).remote(request, self.threads)
        future: Future[UnitResult] = ref.future()
        self.refs.add(ref)
        future.add_done_callback(lambda _: self.refs.discard(ref))
        return future

    def error(self, exc: BaseException) -> BaseException:
        errors = self.ray.exceptions
        if isinstance(exc, errors.RayTaskError) and exc.cause is not None:
            return exc.cause  # the unit's own error (a bad input, say), as run_unit raised it
        if isinstance(exc, errors.WorkerCrashedError | errors.NodeDiedError | errors.ObjectLostError):
            return WorkerLost(f"a Ray worker was lost {RETRIES + 1} times on this file; run again to resume")
        if isinstance(exc, errors.RayError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return WorkerLost(f"Ray: {first}")
        return exc

    def close(self, cancel: bool) -> None:
        if cancel:
            for ref in list(self.refs):
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # finished or already gone: nothing to stop
                    continue
        self.ray.shutdown()
