"""Keras networks: shapes, config round trips, pixel-shuffle order, ncnn reading."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from vsr.errors import VsrError  # noqa: E402
from vsr.models.layers import PixelShuffle  # noqa: E402
from vsr.models.ncnn import parse_param  # noqa: E402
from vsr.models.rrdbnet import RRDBNet  # noqa: E402
from vsr.models.srvgg import SRVGGNetCompact  # noqa: E402


@pytest.mark.parametrize(
    ("cls", "config", "n_weighted"),
    [
        (RRDBNet, {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, 1 + 15 + 5),
        (RRDBNet, {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}, 1 + 30 + 5),
        (SRVGGNetCompact, {"num_feat": 8, "num_conv": 2}, 2 * 3 + 1),
    ],
)
def test_shapes_and_config_round_trip(cls, config, n_weighted, tmp_path):
    model = cls(**config)
    x = np.random.default_rng(0).random((2, 16, 12, 3), dtype=np.float32)
    y = model.predict_on_batch(x)
    assert y.shape == (2, 64, 48, 3)
    assert len([layer for layer in model.layers if layer.weights]) == n_weighted
    clone = cls.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict_on_batch(x), y, atol=1e-6)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict_on_batch(x), y, atol=1e-6)


def test_rrdb_layer_names_follow_basicsr():
    names = {layer.name for layer in RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).layers if layer.weights}
    assert {"conv_first", "body_0_rdb1_conv1", "body_0_rdb3_conv5", "conv_body", "conv_up1", "conv_up2"} <= names
    assert {"conv_hr", "conv_last"} <= names


def test_pixel_shuffle_uses_pytorch_channel_order():
    r, c = 2, 3
    x = np.arange(1 * 2 * 2 * c * r * r, dtype=np.float32).reshape(1, 2, 2, c * r * r)
    y = np.asarray(PixelShuffle(r)(x))
    # PyTorch: out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w]
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                assert y[0, 1 * r + i, 0 * r + j, ch] == x[0, 1, 0, ch * r * r + i * r + j]


def test_parse_param_refuses_bad_magic():
    with pytest.raises(VsrError, match="magic"):
        parse_param("123\n1 1\nInput data 0 1 data\n")


def test_parse_param_reads_layers():
    layers = parse_param(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=8 1=3 5=1 6=216 9=2 -23310=1,2.0e-01\n"
    )
    assert [layer.type for layer in layers] == ["Input", "Convolution"]
    assert layers[1].param_int(0) == 8 and layers[1].params[-23310] == "1,2.0e-01"
