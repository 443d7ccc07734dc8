"""Converted-weight cache: written once, verified, rebuilt when damaged or stale."""

from __future__ import annotations

import json

from stages.realesrgan import weights_dir
from vsr.models.registry import ncnn_model
from vsr.models.store import cache_dir, load_converted


def test_cache_is_written_then_reused_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    spec = ncnn_model("anv3", weights_dir() / "REALESRGAN_ANIMAVIDEOV3_UP4X.param", "test", "BSD-3-Clause")
    first, cached = load_converted(spec)
    assert not cached
    sidecar = json.loads((tmp_path / "models" / "anv3.json").read_text())
    assert sidecar["arch"] == "srvgg" and sidecar["config"]["num_conv"] == 16
    assert set(sidecar["sources"]) == {"REALESRGAN_ANIMAVIDEOV3_UP4X.param", "REALESRGAN_ANIMAVIDEOV3_UP4X.bin"}
    second, cached = load_converted(spec)
    assert cached
    for name, weights in first.weights.items():
        for a, b in zip(weights, second.weights[name], strict=True):
            assert (a == b).all()
    # a damaged cache file is detected by its digest and converted again
    npz = tmp_path / "models" / "anv3.npz"
    npz.write_bytes(npz.read_bytes()[:-100])
    third, cached = load_converted(spec)
    assert not cached and third.config == first.config
