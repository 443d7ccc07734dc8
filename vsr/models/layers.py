"""Small layers shared by the ESRGAN-family networks, written with ``keras.ops`` only."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def exact_dtype(dtype: Any) -> Any:
    """The dtype for the layers of a mixed-precision network that need float32's precision.

    ``dtype`` is the network's dtype policy; for a mixed policy (bfloat16 or
    float16 compute, float32 variables) this is ``"float32"``, otherwise
    ``dtype`` itself. ESRGAN-family networks carry their picture through long
    chains of residual additions (RRDBNet's 0.2-scaled skips, the trunk, the
    compact model's added-back input): with bfloat16's 8-bit mantissa every
    addition rounds the running sum to about 1/256 of its size, and the
    errors add up to whole levels of the output. Keeping those additions and
    the last convolutions in float32 costs little (they are a small part of
    the arithmetic) and keeps bfloat16 within a few levels of float32
    (bench/README.md).
    """
    policy = keras.dtype_policies.get(dtype) if dtype is not None else None
    if policy is not None and policy.compute_dtype != policy.variable_dtype:
        return "float32"
    return dtype


@keras.saving.register_keras_serializable(package="vsr")
class PixelShuffle(keras.layers.Layer):
    """Rearrange ``C * r * r`` channels into an ``r`` times larger image.

    Uses PyTorch's channel order (``c * r * r + i * r + j`` goes to output
    channel ``c`` at sub-pixel ``(i, j)``), which is what ESRGAN-family
    checkpoints are trained with. ``tf.nn.depth_to_space`` uses a different
    order (``(i * r + j) * C + c``) and would scramble the colours.
    """

    def __init__(self, scale: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x: Any) -> Any:
        r = self.scale
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        out_c = c // (r * r)
        x = ops.reshape(x, (n, h, w, out_c, r, r))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3))  # n, h, i, w, j, c
        return ops.reshape(x, (n, h * r, w * r, out_c))

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        n, h, w, c = input_shape
        r = self.scale
        return (
            n,
            None if h is None else h * r,
            None if w is None else w * r,
            None if c is None else c // (r * r),
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="vsr")
class PixelUnshuffle(keras.layers.Layer):
    """The inverse of :class:`PixelShuffle`: an ``r`` times smaller image with ``C * r * r`` channels.

    PyTorch's order (``F.pixel_unshuffle``, and BasicSR's own helper): input
    channel ``c`` at sub-pixel ``(i, j)`` goes to output channel
    ``c * r * r + i * r + j``. Height and width must be multiples of ``r``.
    """

    def __init__(self, scale: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x: Any) -> Any:
        r = self.scale
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        x = ops.reshape(x, (n, h // r, r, w // r, r, c))
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4))  # n, h, w, c, i, j
        return ops.reshape(x, (n, h // r, w // r, c * r * r))

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        n, h, w, c = input_shape
        r = self.scale
        return (
            n,
            None if h is None else h // r,
            None if w is None else w // r,
            None if c is None else c * r * r,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="vsr")
class ScaledResidual(keras.layers.Layer):
    """``x * scale + residual``: ESRGAN's residual scaling (0.2 in the paper).

    Scaling the residual down keeps very deep networks without batch
    normalisation stable to train (ESRGAN section 3.1).
    """

    def __init__(self, scale: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs: list[Any]) -> Any:
        x, residual = inputs
        return x * self.scale + residual

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}
