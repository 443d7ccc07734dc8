"""Which accelerator the Keras backend will run on, in words."""

from __future__ import annotations


def describe_device() -> str:
    """E.g. ``"GPU (NVIDIA H100 80GB HBM3) via tensorflow"`` or ``"CPU via tensorflow"``."""
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
