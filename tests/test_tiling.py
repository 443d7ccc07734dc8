"""Tiling: geometry, and tiled output equal to untiled output."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vsr.inference import TiledUpscaler, plan_windows
from vsr.plugins import load_registry

PHOTO = Path(__file__).parent / "data" / "astronaut_192.png"  # NASA portrait (public domain), via scikit-image


@pytest.mark.parametrize(
    ("h", "w", "tile", "pad"), [(100, 130, 32, 8), (36, 64, 16, 4), (17, 300, 64, 48), (64, 64, 0, 0)]
)
def test_windows_cover_frame_once_with_one_shape(h, w, tile, pad):
    windows = plan_windows(h, w, tile, pad)
    covered = np.zeros((h, w), dtype=int)
    shapes = set()
    for win in windows:
        covered[win.core_y[0] : win.core_y[1], win.core_x[0] : win.core_x[1]] += 1
        assert win.win_y[0] <= win.core_y[0] and win.core_y[1] <= win.win_y[1]
        assert win.win_x[0] <= win.core_x[0] and win.core_x[1] <= win.win_x[1]
        # at least `pad` pixels of context wherever the frame has them
        assert win.core_y[0] - win.win_y[0] >= min(pad, win.core_y[0])
        assert win.win_x[1] - win.core_x[1] >= min(pad, w - win.core_x[1])
        shapes.add((win.win_y[1] - win.win_y[0], win.win_x[1] - win.win_x[0]))
    assert (covered == 1).all()
    assert len(shapes) == 1  # one compiled graph per frame size


def test_axis_covered_by_one_window_is_not_split():
    assert len(plan_windows(352, 352, 256, 48)) == 1  # tiling would run the whole frame 4 times
    assert len(plan_windows(353, 300, 256, 48)) == 2


def _network(name: str):
    from vsr.models.build import build_network
    from vsr.models.store import load_converted

    return build_network(load_converted(load_registry().model(name))[0])


def test_tiled_equals_untiled_with_tiny_model():
    # receptive field of the tiny SRVGG (3 convs) is 3 px: a 4 px pad must be exact
    net = _network("tiny-srvgg")
    frame = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    whole = TiledUpscaler(net, 4, 0, 0, 1).upscale([frame])[0]
    tiled = TiledUpscaler(net, 4, 16, 4, 3).upscale([frame])[0]
    assert whole.shape == (160, 200, 3) and whole.dtype == np.uint8
    np.testing.assert_array_equal(tiled, whole)


def test_batched_frames_equal_single_frames():
    net = _network("tiny-rrdb")
    frames = [np.random.default_rng(i).integers(0, 256, (12, 20, 3), dtype=np.uint8) for i in range(3)]
    one_by_one = [TiledUpscaler(net, 4, 0, 0, 1).upscale([f])[0] for f in frames]
    batched = TiledUpscaler(net, 4, 0, 0, 4).upscale(frames)
    for a, b in zip(one_by_one, batched, strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1


def test_sixteen_bit_frames_stay_sixteen_bit():
    net = _network("tiny-srvgg")
    frame = np.random.default_rng(0).integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    out = TiledUpscaler(net, 4, 0, 0, 1, "uint16").upscale([frame])[0]
    assert out.dtype == np.uint16 and out.shape == (32, 32, 3)
    assert out.max() > 255


@pytest.mark.slow
@pytest.mark.parametrize(("model", "arch"), [("realesrgan-x4plus-anime", "rrdbnet"), ("realesr-animevideov3", "srvgg")])
def test_real_weights_tiled_matches_untiled_on_a_photo(model, arch):
    """The anime RRDB and the compact model on a real photograph: their default padding keeps seams invisible."""
    from vsr.inference import AUTO_PAD

    pad = AUTO_PAD[arch]  # what tile_pad = "auto" gives this model
    photo = next(av.open(str(PHOTO)).decode(video=0)).to_ndarray(format="rgb24")
    assert photo.shape == (192, 192, 3)
    net = _network(model)
    whole = TiledUpscaler(net, 4, 0, 0, 1).upscale([photo])[0].astype(int)
    tiled = TiledUpscaler(net, 4, 64, pad, 3).upscale([photo])[0].astype(int)
    assert len(plan_windows(192, 192, 64, pad)) == 9  # really tiled
    diff = np.abs(tiled - whole)
    assert diff.max() <= 2
    assert diff.mean() <= 0.05


@pytest.mark.parametrize("multiple", [2, 4])
def test_unshuffling_networks_get_padded_windows_and_cropped_output(multiple):
    """A network that pixel-unshuffles and shuffles back is the identity: any tiling or padding
    mistake (window sides not multiples, misplaced crops) shows as a changed pixel."""
    import keras

    from vsr.models.layers import PixelShuffle, PixelUnshuffle

    inputs = keras.Input((None, None, 3))
    net = keras.Model(inputs, PixelShuffle(multiple)(PixelUnshuffle(multiple)(inputs)))
    net.input_multiple = multiple
    frame = np.random.default_rng(0).integers(0, 256, (37, 43, 3), dtype=np.uint8)
    for tile, pad in [(0, 0), (8, 3), (16, 5)]:
        windows = plan_windows(40, 44, tile, pad, multiple)
        assert all((w.win_y[1] - w.win_y[0]) % multiple == 0 == (w.win_x[1] - w.win_x[0]) % multiple for w in windows)
        out = TiledUpscaler(net, 1, tile, pad, batch=3).upscale([frame, frame[:, :41]])
        np.testing.assert_array_equal(out[0], frame)
        np.testing.assert_array_equal(out[1], frame[:, :41])


def test_windows_are_the_longest_core_plus_context_not_a_full_tile():
    # 1080p in 256 px tiles: 5 x 8 cores of 216 x 240; windows 312 x 336 rather than 352 x 352
    windows = plan_windows(1080, 1920, 256, 48)
    assert len(windows) == 40
    assert {(w.win_y[1] - w.win_y[0], w.win_x[1] - w.win_x[0]) for w in windows} == {(312, 336)}


def test_auto_tile_fits_the_budget():
    from vsr.inference import auto_tile

    per_px = 11_264
    tile = auto_tile(per_px, 48, 1, 1 << 30)
    assert tile % 8 == 0 and (tile + 96) ** 2 * per_px <= 1 << 30 < (tile + 8 + 96) ** 2 * per_px
    assert auto_tile(per_px, 48, 4, 1 << 30) < tile  # a batch of windows shares the budget
    assert auto_tile(per_px, 48, 1, 1 << 20) == 64  # never below 64 px
    assert auto_tile(per_px, 10, 1, 1 << 30, multiple=4) % 8 == 0
    assert auto_tile(1000, 10, 1, 1 << 30, multiple=16) % 16 == 0


def test_activation_estimate_follows_the_architecture():
    from vsr.inference import DEFAULT_BYTES_PER_PIXEL, activation_bytes_per_pixel
    from vsr.models.rrdbnet import RRDBNet
    from vsr.models.srvgg import SRVGGNetCompact

    rrdb = activation_bytes_per_pixel(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4))
    assert rrdb == activation_bytes_per_pixel(RRDBNet(num_block=2, num_feat=8, num_grow_ch=4))  # depth is free
    assert activation_bytes_per_pixel(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, scale=2)) == rrdb // 4
    assert activation_bytes_per_pixel(SRVGGNetCompact(num_conv=1, num_feat=8)) < rrdb
    assert activation_bytes_per_pixel(object()) == DEFAULT_BYTES_PER_PIXEL


def test_auto_precision_per_device(monkeypatch):
    from vsr import device

    assert device.default_precision(gpu=True) == "float16"
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert device.default_precision(gpu=False) == "bfloat16"
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "fma"})
    assert device.default_precision(gpu=False) == "float32"


def test_cpu_memory_budget_is_a_capped_share(monkeypatch):
    from vsr import device

    monkeypatch.setattr(device, "has_gpu", lambda: False)
    monkeypatch.setattr(device, "device_memory", lambda: 2 << 30)
    assert device.memory_budget() == 512 << 20
    monkeypatch.setattr(device, "device_memory", lambda: 64 << 30)
    assert device.memory_budget() == device.CPU_BUDGET_CAP
