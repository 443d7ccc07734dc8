"""Our Keras models against the independent ncnn engine, on the real Real-ESRGAN weights."""

from __future__ import annotations

import numpy as np
import pytest

ncnn = pytest.importorskip("ncnn")

from stages.realesrgan import weights_dir  # noqa: E402
from vsr.errors import VsrError  # noqa: E402
from vsr.models.build import build_network  # noqa: E402
from vsr.models.ncnn import convert  # noqa: E402

MODELS = {
    "REALESRGAN_ANIMAVIDEOV3_UP4X": ("srvgg", {"num_feat": 64, "num_conv": 16, "upscale": 4}),
    "REALESRGAN_X4PLUSANIME_UP4X": ("rrdbnet", {"num_feat": 64, "num_block": 6, "num_grow_ch": 32}),
    "REALESRGAN_X4PLUS_UP4X": ("rrdbnet", {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}),
}


def run_ncnn(stem: str, image: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, flag, False)  # fp32 throughout, for a tight comparison
    net.load_param(str(weights_dir() / f"{stem}.param"))
    net.load_model(str(weights_dir() / f"{stem}.bin"))
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))  # keep alive while ncnn reads it
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    ret, out = extractor.extract("output")
    assert ret == 0
    return np.array(out).transpose(1, 2, 0)


@pytest.mark.slow
@pytest.mark.parametrize("stem", list(MODELS))
def test_keras_matches_ncnn(stem):
    converted = convert(weights_dir() / f"{stem}.param", weights_dir() / f"{stem}.bin")
    arch, expected = MODELS[stem]
    assert converted.arch == arch
    assert {k: converted.config[k] for k in expected} == expected
    image = np.random.default_rng(1).random((20, 24, 3), dtype=np.float32)
    ours = build_network(converted).predict_on_batch(image[None])[0]
    reference = run_ncnn(stem, image)
    assert ours.shape == reference.shape == (80, 96, 3)
    assert np.abs(ours - reference).max() < 1e-4


def test_bicubic_variants_are_refused():
    with pytest.raises(VsrError, match="x2/x3 variant"):
        convert(
            weights_dir() / "REALESRGAN_ANIMAVIDEOV3_UP2X.param", weights_dir() / "REALESRGAN_ANIMAVIDEOV3_UP2X.bin"
        )


def test_truncated_bin_is_a_clear_error(tmp_path):
    stem = "REALESRGAN_ANIMAVIDEOV3_UP4X"
    (tmp_path / "m.param").write_bytes((weights_dir() / f"{stem}.param").read_bytes())
    (tmp_path / "m.bin").write_bytes((weights_dir() / f"{stem}.bin").read_bytes()[:100_000])
    with pytest.raises(VsrError, match="truncated"):
        convert(tmp_path / "m.param", tmp_path / "m.bin")
