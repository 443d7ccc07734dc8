"""Temporal smoothing on clips with known ground truth, measured with vsr.metrics."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from conftest import TINY, run_vsr
from stages.smooth import SmoothOptions, TemporalSmoother
from vsr.frame import Colour, Frame
from vsr.metrics import StabilityReport, change_map, content_change, hsv, psnr, resize_nearest, ssim
from vsr.sample import cartoon_frame
from vsr.stage import Job

TB = Fraction(1, 24)


def up4(lr: np.ndarray) -> np.ndarray:
    return lr.repeat(4, axis=0).repeat(4, axis=1)


def noisy(hr: np.ndarray, seed: int, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, hr.shape)
    return np.clip(hr + noise, 0, 255).round().astype(np.uint8)


def frames_of(lrs: list[np.ndarray], sigma: float) -> list[Frame]:
    """What an upscaler hands on: noisy 4x frames (ESRGAN-like shimmer) with their sources."""
    return [
        Frame(noisy(up4(lr), seed=t, sigma=sigma), pts=3 * t, time_base=TB, colour=Colour(), index=t, source=lr)
        for t, lr in enumerate(lrs)
    ]


def smooth(frames: list[Frame], **options) -> list[Frame]:
    stage = TemporalSmoother(SmoothOptions(**options), Job(None, None, None))  # type: ignore[arg-type]
    return list(stage.process(iter(frames)))


def report(lrs, outs, unsmoothed=None) -> StabilityReport:
    r = StabilityReport()
    for i, (lr, out) in enumerate(zip(lrs, outs, strict=True)):
        r.add(lr, out, unsmoothed=None if unsmoothed is None else unsmoothed[i])
    return r


def test_static_scene_flicker_falls_by_more_than_half():
    lrs = [cartoon_frame(0, 48, 32, 10)] * 12
    frames = frames_of(lrs, sigma=6)
    out = smooth(frames)
    assert [f.pts for f in out] == [f.pts for f in frames] and len(out) == len(frames)
    before = report(lrs, [f.pixels for f in frames]).flicker
    after = report(lrs, [f.pixels for f in out]).flicker
    assert after <= 0.5 * before, (before, after)


def test_moving_object_leaves_no_trail():
    background = cartoon_frame(0, 64, 32, 10)
    lrs, truths = [], []
    for t in range(10):
        lr = background.copy()
        lr[12:20, 4 + 4 * t : 12 + 4 * t] = (20, 20, 120)  # a dark square moving right
        lrs.append(lr)
        truths.append(up4(lr))
    frames = frames_of(lrs, sigma=3)
    out = smooth(frames)
    for t in range(1, 10):
        moving = resize_nearest(change_map(lrs[t - 1], lrs[t], 1) > 2, 128, 256)
        assert moving.any()
        raw = psnr(frames[t].pixels, truths[t], moving)
        ours = psnr(out[t].pixels, truths[t], moving)
        assert ours >= raw - 0.5, (t, raw, ours)
    r = report(lrs, [f.pixels for f in out], unsmoothed=[f.pixels for f in frames])
    assert r.ghosting < 0.5  # moving pixels are (nearly) the unsmoothed ones
    assert r.flicker < 0.7 * report(lrs, [f.pixels for f in frames]).flicker


def test_hard_cut_resets_history():
    a, b = cartoon_frame(0, 48, 32, 10), (255 - cartoon_frame(0, 48, 32, 10))[:, ::-1].copy()
    assert content_change(hsv(a), hsv(b)) > 27
    lrs = [a] * 5 + [b] * 5
    frames = frames_of(lrs, sigma=6)
    out = smooth(frames)
    np.testing.assert_array_equal(out[5].pixels, frames[5].pixels)  # first frame after the cut: untouched
    assert not np.array_equal(out[6].pixels, frames[6].pixels)  # smoothing resumes within the new scene
    assert not np.array_equal(out[4].pixels, frames[4].pixels)


def test_sixteen_bit_frames_and_strength_zero():
    lr = cartoon_frame(0, 16, 16, 10)
    frames = [f for f in frames_of([lr] * 3, sigma=4)]
    deep = [Frame(f.pixels.astype(np.uint16) * 257, f.pts, f.time_base, f.colour, f.index, f.source) for f in frames]
    out = smooth(deep)
    assert all(f.pixels.dtype == np.uint16 for f in out)
    off = smooth(frames, strength=0.0)
    for a, b in zip(off, frames, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_metrics_basics():
    img = cartoon_frame(0, 32, 32, 10)
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0)
    noisy_img = noisy(img.astype(float), 1, 10)
    assert 25 < psnr(img, noisy_img) < 35
    assert ssim(img, noisy_img) < 0.95


def test_cli_smooth_and_metrics(sample_clip, tmp_path):
    plain, smoothed = tmp_path / "plain.mp4", tmp_path / "smooth.mp4"
    assert run_vsr("upscale", str(sample_clip), "-o", str(plain), *TINY).returncode == 0
    result = run_vsr(
        "upscale", str(sample_clip), "-o", str(smoothed), *TINY, "--smooth", "--set", "smooth.strength=0.8"
    )
    assert result.returncode == 0, result.stderr
    measured = run_vsr(
        "metrics", str(sample_clip), str(smoothed), "--unsmoothed", str(plain), "--reference", str(plain), "--json"
    )
    assert measured.returncode == 0, measured.stderr
    data = json.loads(measured.stdout)
    assert data["frames"] == 12 and data["ghosting"] is not None and data["psnr"] > 25
    baseline = json.loads(run_vsr("metrics", str(sample_clip), str(plain), "--json").stdout)
    assert data["flicker"] <= baseline["flicker"]
