"""ESRGAN's discriminator: BasicSR's ``VGGStyleDiscriminator`` for 128x128 patches, in Keras 3."""

from __future__ import annotations

from typing import Any

import keras


def vgg_style_discriminator(
    num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128, dtype: Any = None
) -> keras.Model:
    """Five stages of (3x3 conv, 4x4 stride-2 conv), batch norm, LeakyReLU 0.2, then two dense layers.

    The output is one logit per image (no sigmoid: the relativistic loss
    compares raw logits). ``input_size`` must be 128 or 256, as in BasicSR.
    ``dtype`` is a Keras dtype policy (``"mixed_bfloat16"`` for mixed precision).
    """
    if input_size not in (128, 256):
        raise ValueError("the VGG-style discriminator takes 128 or 256 pixel patches")
    inputs = keras.Input((input_size, input_size, num_in_ch), name="image")

    def lrelu(x: Any) -> Any:
        return keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype)(x)

    def bn(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=dtype)

    x = lrelu(keras.layers.Conv2D(num_feat, 3, padding="same", name="conv0_0", dtype=dtype)(inputs))
    x = keras.layers.Conv2D(num_feat, 4, strides=2, padding="same", use_bias=False, name="conv0_1", dtype=dtype)(x)
    x = lrelu(bn("bn0_1")(x))
    widths = [2, 4, 8, 8] + ([8] if input_size == 256 else [])
    for stage, mult in enumerate(widths, start=1):
        for k, (size, stride) in enumerate(((3, 1), (4, 2))):
            name = f"conv{stage}_{k}"
            conv = keras.layers.Conv2D(
                num_feat * mult, size, strides=stride, padding="same", use_bias=False, name=name, dtype=dtype
            )
            x = lrelu(bn(f"bn{stage}_{k}")(conv(x)))
    x = keras.layers.Flatten(dtype=dtype)(x)
    x = lrelu(keras.layers.Dense(100, name="linear1", dtype=dtype)(x))
    outputs = keras.layers.Dense(1, name="linear2", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name="vgg_style_discriminator")
