"""ESRGAN's RRDBNet (Wang et al. 2018) as a Keras 3 functional model.

Follows BasicSR's ``rrdbnet_arch.py`` layer for layer, so that weights map by
name: ``conv_first``, ``body_{b}_rdb{k}_conv{m}``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``.
"""

from __future__ import annotations

from typing import Any

import keras

from vsr.models.layers import PixelUnshuffle, ScaledResidual, exact_dtype

#: ESRGAN's residual scaling factor ("we use 0.2 to scale the residual").
RESIDUAL_SCALE = 0.2
#: LeakyReLU slope used throughout ESRGAN.
LEAKY_SLOPE = 0.2


def _conv(filters: int, name: str, dtype: Any) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, 3, padding="same", name=name, dtype=dtype)


def _leaky(name: str, dtype: Any) -> keras.layers.LeakyReLU:
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name, dtype=dtype)


def residual_dense_block(x: Any, num_feat: int, num_grow_ch: int, name: str, dtype: Any = None) -> Any:
    """Five densely connected 3x3 convs; the fifth maps back to ``num_feat``.

    Args:
        x: input tensor with ``num_feat`` channels.
        num_feat: channels of the block's input and output.
        num_grow_ch: channels each of the first four convs adds ("growth").
        name: prefix for the layer names.
        dtype: Keras dtype policy (the scaled skip stays in float32 under a mixed policy).
    """
    features = [x]
    for m in range(1, 5):
        inp = features[0] if m == 1 else keras.layers.Concatenate(name=f"{name}_cat{m}", dtype=dtype)(features)
        y = _conv(num_grow_ch, f"{name}_conv{m}", dtype)(inp)
        features.append(_leaky(f"{name}_lrelu{m}", dtype)(y))
    y = _conv(num_feat, f"{name}_conv5", dtype)(keras.layers.Concatenate(name=f"{name}_cat5", dtype=dtype)(features))
    return ScaledResidual(RESIDUAL_SCALE, name=f"{name}_res", dtype=exact_dtype(dtype))([y, x])


def rrdb(x: Any, num_feat: int, num_grow_ch: int, name: str, dtype: Any = None) -> Any:
    """Residual-in-residual dense block: three dense blocks and a scaled skip."""
    y = x
    for k in range(1, 4):
        y = residual_dense_block(y, num_feat, num_grow_ch, f"{name}_rdb{k}", dtype)
    return ScaledResidual(RESIDUAL_SCALE, name=f"{name}_res", dtype=exact_dtype(dtype))([y, x])


@keras.saving.register_keras_serializable(package="vsr")
class RRDBNet(keras.Model):
    """ESRGAN generator: residual-in-residual dense blocks, no batch norm.

    ``num_upsample`` nearest-neighbour x2 upsamplings, each followed by a
    conv, enlarge the trunk's features. As in BasicSR, the x2 and x1 models
    keep the x4 trunk and first pixel-unshuffle the input by 2 or 4 (their
    first conv sees 12 or 48 channels); input sizes must then be multiples
    of that factor (:attr:`input_multiple`). The original ESRGAN code instead
    varied the number of upsamplings (one for x2, three for x8), which
    ``num_upsample`` covers. Input and output are RGB in 0..1 (the output is
    not clamped).

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB).
        num_feat: feature channels of the trunk. Default: 64.
        num_block: number of RRDB blocks. Default: 23 (the paper's model).
        num_grow_ch: growth channels inside each dense block. Default: 32.
        scale: output size over input size: 1, 2, 4 or 8. Default: 4.
        num_upsample: x2 upsampling steps. Default: 2 (BasicSR's only choice).
        dtype: Keras dtype policy, e.g. ``"mixed_bfloat16"``; under a mixed policy the first and
            last convs and the residual additions compute in float32 (see
            :func:`vsr.models.layers.exact_dtype`).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
        num_upsample: int = 2,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        unshuffle, rest = divmod(2**num_upsample, scale)
        if scale < 1 or rest or unshuffle not in (1, 2, 4):
            raise ValueError(f"RRDBNet: scale {scale} does not fit {num_upsample} x2 upsamplings")
        # === Functional Model ===
        # under a mixed policy the first and last convs, the skips and the trunk addition stay in
        # float32: they carry the picture itself, which bfloat16 would round to 1/256 (exact_dtype)
        exact = exact_dtype(dtype)
        inputs = keras.Input(shape=(None, None, num_in_ch), name="image")
        x = inputs
        if unshuffle > 1:
            x = PixelUnshuffle(unshuffle, name="pixel_unshuffle", dtype=exact)(x)
        feat = _conv(num_feat, "conv_first", exact)(x)
        body = feat
        for b in range(num_block):
            body = rrdb(body, num_feat, num_grow_ch, f"body_{b}", dtype)
        body = _conv(num_feat, "conv_body", dtype)(body)
        feat = keras.layers.Add(name="trunk_add", dtype=exact)([feat, body])
        for i in range(1, num_upsample + 1):
            feat = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}", dtype=dtype)(feat)
            feat = _leaky(f"lrelu_up{i}", dtype)(_conv(num_feat, f"conv_up{i}", dtype)(feat))
        feat = _leaky("lrelu_hr", dtype)(_conv(num_feat, "conv_hr", dtype)(feat))
        outputs = _conv(num_out_ch, "conv_last", exact)(feat)
        kwargs.setdefault("name", "rrdbnet")
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block
        self.num_grow_ch = num_grow_ch
        self.scale = scale
        self.num_upsample = num_upsample
        #: input height and width must be multiples of this
        self.input_multiple = unshuffle

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "num_feat": self.num_feat,
            "num_block": self.num_block,
            "num_grow_ch": self.num_grow_ch,
            "scale": self.scale,
            "num_upsample": self.num_upsample,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RRDBNet:
        return cls(**config)
