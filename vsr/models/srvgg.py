"""SRVGGNetCompact (Real-ESRGAN's compact video model) as a Keras 3 model.

A plain VGG-style stack of 3x3 convs with PReLU, a pixel shuffle, and the
nearest-upsampled input added back, so the network only learns the residual.
Layer names follow Real-ESRGAN's ``body.N`` indices: ``body_0`` (first conv),
``body_1`` (its PReLU), ... ``body_{2 * num_conv + 2}`` (last conv).
"""

from __future__ import annotations

from typing import Any

import keras

from vsr.models.layers import PixelShuffle, exact_dtype


@keras.saving.register_keras_serializable(package="vsr")
class SRVGGNetCompact(keras.Model):
    """Compact super-resolution network used for anime video.

    Args:
        num_in_ch: input channels. Default: 3.
        num_out_ch: output channels. Default: 3.
        num_feat: feature channels. Default: 64.
        num_conv: convs in the body, besides the first and the last. Default: 16.
        upscale: scale factor. Default: 4.
        dtype: Keras dtype policy, e.g. ``"mixed_bfloat16"``; under a mixed policy the first conv
            and the added-back input compute in float32 (see :func:`vsr.models.layers.exact_dtype`).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        # === Functional Model ===
        # under a mixed policy the first conv (it sees the pixels) and the added-back input stay in
        # float32: bfloat16 would round the picture itself to 1/256 (exact_dtype)
        exact = exact_dtype(dtype)
        inputs = keras.Input(shape=(None, None, num_in_ch), name="image")
        x = inputs
        index = 0
        for _ in range(num_conv + 1):
            layer_dtype = exact if index == 0 else dtype
            x = keras.layers.Conv2D(num_feat, 3, padding="same", name=f"body_{index}", dtype=layer_dtype)(x)
            x = keras.layers.PReLU(  # slopes start at 0.25 as PyTorch's do (zeros, Keras' default, is a ReLU)
                alpha_initializer=keras.initializers.Constant(0.25),
                shared_axes=[1, 2],
                name=f"body_{index + 1}",
                dtype=layer_dtype,
            )(x)
            index += 2
        x = keras.layers.Conv2D(num_out_ch * upscale * upscale, 3, padding="same", name=f"body_{index}", dtype=dtype)(x)
        x = PixelShuffle(upscale, name="pixel_shuffle", dtype=dtype)(x)
        base = keras.layers.UpSampling2D(upscale, interpolation="nearest", name="base", dtype=exact)(inputs)
        outputs = keras.layers.Add(name="add_base", dtype=exact)([x, base])
        kwargs.setdefault("name", "srvggnet_compact")
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_conv = num_conv
        self.upscale = upscale
        self.scale = upscale
        #: input height and width must be multiples of this (1: any size)
        self.input_multiple = 1

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "num_feat": self.num_feat,
            "num_conv": self.num_conv,
            "upscale": self.upscale,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SRVGGNetCompact:
        return cls(**config)
