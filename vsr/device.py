"""Which accelerator the Keras backend will run on, in words."""

from __future__ import annotations

import functools


@functools.cache
def describe_device() -> str:
    """E.g. ``"GPU (NVIDIA H100 80GB HBM3) via tensorflow"`` or ``"CPU via tensorflow"``; asked once per process."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"GPU ({details.get('device_name', gpus[0].name)}) via tensorflow"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"{device.platform.upper()} ({device.device_kind}) via jax"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU ({torch.cuda.get_device_name(0)}) via torch"
    except Exception:  # device discovery is informational only
        pass
    return f"CPU via {backend}"


def has_gpu() -> bool:
    return not describe_device().startswith("CPU")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


#: CPU features that run bfloat16 dot products natively (AVX-512 BF16 on Zen 4 / Cooper Lake, AMX on Sapphire Rapids).
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def default_precision(gpu: bool | None = None) -> str:
    """What ``precision = "auto"`` means on this machine.

    A GPU: float16 (tensor cores run it as fast as bfloat16, and its longer
    mantissa costs far less quality: about 58-62 dB PSNR against float32
    instead of 50-54 dB, see bench/README.md). A CPU with native bfloat16:
    bfloat16. Any other CPU: float32 (half precisions are emulated there and
    gain nothing measurable).
    """
    if gpu is None:
        gpu = has_gpu()
    if gpu:
        return "float16"
    return "bfloat16" if cpu_flags() & BF16_CPU_FLAGS else "float32"


def device_memory() -> int:
    """Bytes of memory on the device the upscaler runs on: the card's limit, or the machine's RAM.

    Totals, not what is free right now, so that automatic tiling (and with it
    the output) is the same on every run on a machine: a resumed file's
    segments must match the ones written before.
    """
    import keras

    if has_gpu():
        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"])
        return 8 << 30  # no portable query under TensorFlow or torch: assume a modest card
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


#: On a CPU, activations may take this share of the RAM, and at most CPU_BUDGET_CAP bytes:
#: past ~500 px windows the overlap saved is small, and the rest of the machine keeps its memory.
CPU_BUDGET_SHARE = 0.25
CPU_BUDGET_CAP = 5 << 28  # 1.25 GiB
#: On a GPU the model is alone on the card: half of its memory.
GPU_BUDGET_SHARE = 0.5


def memory_budget() -> int:
    """Bytes of activations that automatic tiling plans for."""
    if has_gpu():
        return int(device_memory() * GPU_BUDGET_SHARE)
    return min(int(device_memory() * CPU_BUDGET_SHARE), CPU_BUDGET_CAP)
