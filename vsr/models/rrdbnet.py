"""ESRGAN's RRDBNet (Wang et al. 2018) as a Keras 3 functional model.

Follows BasicSR's ``rrdbnet_arch.py`` layer for layer, so that weights map by
name: ``conv_first``, ``body_{b}_rdb{k}_conv{m}``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``.
"""

from __future__ import annotations

from typing import Any

import keras

from vsr.models.layers import ScaledResidual

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
        dtype: Keras dtype policy for every layer.
    """
    features = [x]
    for m in range(1, 5):
        inp = features[0] if m == 1 else keras.layers.Concatenate(name=f"{name}_cat{m}", dtype=dtype)(features)
        y = _conv(num_grow_ch, f"{name}_conv{m}", dtype)(inp)
        features.append(_leaky(f"{name}_lrelu{m}", dtype)(y))
    y = _conv(num_feat, f"{name}_conv5", dtype)(keras.layers.Concatenate(name=f"{name}_cat5", dtype=dtype)(features))
    return ScaledResidual(RESIDUAL_SCALE, name=f"{name}_res", dtype=dtype)([y, x])


def rrdb(x: Any, num_feat: int, num_grow_ch: int, name: str, dtype: Any = None) -> Any:
    """Residual-in-residual dense block: three dense blocks and a scaled skip."""
    y = x
    for k in range(1, 4):
        y = residual_dense_block(y, num_feat, num_grow_ch, f"{name}_rdb{k}", dtype)
    return ScaledResidual(RESIDUAL_SCALE, name=f"{name}_res", dtype=dtype)([y, x])


@keras.saving.register_keras_serializable(package="vsr")
class RRDBNet(keras.Model):
    """ESRGAN generator: residual-in-residual dense blocks, no batch norm.

    Two nearest-neighbour x2 upsamplings, each followed by a conv, give the
    x4 output. Input and output are RGB in 0..1 (the output is not clamped).

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB).
        num_feat: feature channels of the trunk. Default: 64.
        num_block: number of RRDB blocks. Default: 23 (the paper's model).
        num_grow_ch: growth channels inside each dense block. Default: 32.
        dtype: Keras dtype policy, e.g. ``"mixed_bfloat16"``.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        # === Functional Model ===
        inputs = keras.Input(shape=(None, None, num_in_ch), name="image")
        feat = _conv(num_feat, "conv_first", dtype)(inputs)
        body = feat
        for b in range(num_block):
            body = rrdb(body, num_feat, num_grow_ch, f"body_{b}", dtype)
        body = _conv(num_feat, "conv_body", dtype)(body)
        feat = keras.layers.Add(name="trunk_add", dtype=dtype)([feat, body])
        for i in (1, 2):
            feat = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}", dtype=dtype)(feat)
            feat = _leaky(f"lrelu_up{i}", dtype)(_conv(num_feat, f"conv_up{i}", dtype)(feat))
        feat = _leaky("lrelu_hr", dtype)(_conv(num_feat, "conv_hr", dtype)(feat))
        outputs = _conv(num_out_ch, "conv_last", dtype)(feat)
        kwargs.setdefault("name", "rrdbnet")
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block
        self.num_grow_ch = num_grow_ch
        self.scale = 4

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "num_feat": self.num_feat,
            "num_block": self.num_block,
            "num_grow_ch": self.num_grow_ch,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RRDBNet:
        return cls(**config)
