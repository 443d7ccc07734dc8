"""Temporal smoothing on clips with known ground truth, measured with vsr.metrics.

The motion tests run the real compact model (realesr-animevideov3) on clips
with known motion cut from a real photograph (tests/motion_clips.py), so the
shimmer being smoothed is ESRGAN's own.
"""

from __future__ import annotations

import json
from fractions import Fraction

import av
import cv2
import motion_clips as clips
import numpy as np
import pytest

from conftest import TINY, decode_rgb, ffmpeg, run_vsr
from stages.smooth import SmoothOptions, TemporalSmoother
from vsr.frame import Colour, Frame
from vsr.metrics import StabilityReport, change_map, content_change, hsv, psnr, resize_nearest, ssim
from vsr.motion import FlowEstimator, gate, remap, scale_flow
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


def reference_blend(options: SmoothOptions, current, previous, small, previous_small, flow) -> np.ndarray:
    """The smoother's output-resolution blend written again in numpy and OpenCV."""
    flow, weight = gate(previous_small, small, flow, options.strength, options.motion_threshold, options.radius)
    height, width = current.shape[:2]
    moved = np.round(scale_flow(flow, height, width)).astype(int)  # whole output pixels, edges replicated
    ys = np.clip(np.arange(height)[:, None] + moved[..., 1], 0, height - 1)
    xs = np.clip(np.arange(width)[None, :] + moved[..., 0], 0, width - 1)
    history = previous[ys, xs].astype(np.float32)
    cur = current.astype(np.float32)
    return np.clip(np.round(cur + cv2.resize(weight, (width, height))[..., None] * (history - cur)), 0, 255)


def test_compiled_blend_matches_an_opencv_reference():
    """The Keras graph (warp, enlargement, blend) against the same steps in numpy and OpenCV, on a real pan."""
    truths = clips.pan(frames=2, step=6)
    small = clips.inputs(truths)
    small[1][20:30, 30:40] = 255  # something the flow cannot explain: the gate must reject it
    rng = np.random.default_rng(0)
    outs = [np.clip(t.astype(int) + rng.integers(-6, 7, t.shape), 0, 255).astype(np.uint8) for t in truths]
    options = SmoothOptions()
    stage = TemporalSmoother(options, Job(None, None, None))  # type: ignore[arg-type]
    ours = stage.blend(outs[1], outs[0], small[1], small[0])
    flow = FlowEstimator(options.flow)(small[0], small[1])
    assert 1.2 < float(np.median(flow[..., 0])) < 1.8  # the pan: 1.5 input pixels to the right
    expected = reference_blend(options, outs[1], outs[0], small[1], small[0], flow)
    diff = np.abs(ours.astype(np.float32) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    assert not np.array_equal(ours, outs[1])  # it blended
    np.testing.assert_array_equal(ours[80:120, 120:160], outs[1][80:120, 120:160])  # not where the gate said no


@pytest.fixture(scope="module")
def compact():
    """The real compact model, whole frames, float32: the shimmer in these tests is ESRGAN's."""
    from vsr.inference import build_upscaler
    from vsr.models.store import load_converted
    from vsr.plugins import load_registry

    converted, _ = load_converted(load_registry().model("realesr-animevideov3"))
    return build_upscaler(converted, precision="float32", tile=0)


def upscaled(compact, truths: list[np.ndarray]) -> tuple[list[np.ndarray], list[Frame]]:
    small = clips.inputs(truths)
    frames = [
        Frame(compact.upscale([lr])[0], pts=t, time_base=TB, colour=Colour(), index=t, source=lr)
        for t, lr in enumerate(small)
    ]
    return small, frames


def measured(small, frames, out, truths) -> tuple[StabilityReport, StabilityReport, float, float]:
    before, after = StabilityReport(), StabilityReport()
    for lr, raw, ours in zip(small, frames, out, strict=True):
        before.add(lr, raw.pixels)
        after.add(lr, ours.pixels, unsmoothed=raw.pixels)
    psnr_before = float(np.mean([psnr(f.pixels, t) for f, t in zip(frames, truths, strict=True)]))
    psnr_after = float(np.mean([psnr(f.pixels, t) for f, t in zip(out, truths, strict=True)]))
    return before, after, psnr_before, psnr_after


@pytest.mark.slow
@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_camera_motion_is_smoothed(compact, motion):
    truths = clips.pan() if motion == "pan" else clips.zoom()
    small, frames = upscaled(compact, truths)
    before, after, psnr_before, psnr_after = measured(small, frames, smooth(frames), truths)
    assert after.mc_flicker <= 0.7 * before.mc_flicker, (before.mc_flicker, after.mc_flicker)
    assert psnr_after >= psnr_before - 0.3, (psnr_before, psnr_after)
    assert after.ghosting < 0.5
    if motion == "pan":  # without motion compensation (the old smoother) a pan gains nothing
        _, still_only, _, _ = measured(small, frames, smooth(frames, flow="none"), truths)
        assert still_only.mc_flicker > 0.9 * before.mc_flicker


@pytest.mark.slow
def test_moving_object_is_smoothed_without_a_trail(compact):
    truths, masks = clips.moving_object()
    small, frames = upscaled(compact, truths)
    out = smooth(frames)
    before, after, psnr_before, psnr_after = measured(small, frames, out, truths)
    assert after.mc_flicker <= 0.7 * before.mc_flicker and psnr_after >= psnr_before - 0.3
    for t in range(1, len(masks)):
        # the background the object just uncovered (and a margin): only the current frame may show there
        left = masks[t - 1] & ~masks[t]
        trail = cv2.dilate(left.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~masks[t]
        diff = np.abs(out[t].pixels.astype(float) - frames[t].pixels.astype(float)).max(axis=2)[trail]
        assert diff.mean() < 0.25 and np.percentile(diff, 99) <= 2, (t, diff.mean(), diff.max())
    on_object = [psnr(f.pixels, truth, m) for f, truth, m in zip(out, truths, masks, strict=True)]
    raw_object = [psnr(f.pixels, truth, m) for f, truth, m in zip(frames, truths, masks, strict=True)]
    assert np.mean(on_object) >= np.mean(raw_object) - 0.3, (on_object, raw_object)  # the object is not smeared


@pytest.mark.slow
def test_nothing_crosses_a_cut(compact):
    truths = clips.cut()
    _, frames = upscaled(compact, truths)
    out = smooth(frames)
    np.testing.assert_array_equal(out[6].pixels, frames[6].pixels)  # the first frame after the cut: as it came
    after_cut = smooth(frames[6:])  # the second scene alone, with no history at all
    for a, b in zip(out[6:], after_cut, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)
    assert not np.array_equal(out[7].pixels, frames[7].pixels)  # smoothing goes on within the new scene


def test_motion_compensated_flicker_measures_shimmer_on_a_pan():
    """vsr.metrics on a pan: a perfect output has (almost) no mc flicker, per-frame noise adds it."""
    truths = clips.pan(frames=6)
    small = clips.inputs(truths, sigma=0.0)
    clean, shimmer = StabilityReport(), StabilityReport()
    for t, (lr, truth) in enumerate(zip(small, truths, strict=True)):
        clean.add(lr, truth)
        shimmer.add(lr, noisy(truth.astype(float), seed=t, sigma=4))
    assert clean.mc_flicker < 1.5 and shimmer.mc_flicker > clean.mc_flicker + 2.5, (
        clean.mc_flicker,
        shimmer.mc_flicker,
    )
    assert np.isnan(clean.flicker) or clean.flicker_count < 0.1 * 5 * 192 * 256  # a pan is not still
    height, width = truths[0].shape[:2]
    flow = FlowEstimator()(small[0], small[1])
    warped, inside = remap(truths[0], scale_flow(flow, height, width))
    assert np.abs(warped - truths[1])[inside].mean() < 3  # the scaled flow moves the truth onto the next frame


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
    assert data["mc_flicker"] is not None
    baseline = json.loads(run_vsr("metrics", str(sample_clip), str(plain), "--json").stdout)
    assert data["flicker"] <= baseline["flicker"]


def test_compare_writes_a_picture_and_a_clip(sample_clip, tmp_path):
    plain, smoothed = tmp_path / "plain.mp4", tmp_path / "smooth.mp4"
    assert run_vsr("upscale", str(sample_clip), "-o", str(plain), *TINY).returncode == 0
    assert run_vsr("upscale", str(sample_clip), "-o", str(smoothed), *TINY, "--smooth").returncode == 0
    picture = tmp_path / "cmp.png"
    args = ["compare", str(sample_clip), str(smoothed), "-o", str(picture), "--unsmoothed", str(plain)]
    result = run_vsr(*args, "--at", "0.25", "--at", "0:00.5", "--video")
    assert result.returncode == 0, result.stderr
    assert "input (bicubic) | unsmoothed | output" in result.stderr
    with av.open(str(picture)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    w, h, gap = 256, 144, 4  # 64x36 upscaled 4x; three columns; per time a whole row and a crop row
    assert image.shape == (2 * (2 * h + gap) + 4 * gap, 3 * w + 2 * gap, 3)
    output_at = decode_rgb(smoothed)[3]  # 0.25 s at 12 fps
    whole = image[:h, 2 * (w + gap) : 2 * (w + gap) + w].astype(int)
    box = (whole == (255, 200, 0)).all(axis=2)  # the marker of the cropped region
    assert 0 < box.mean() < 0.2
    np.testing.assert_array_equal(whole[~box], output_at[~box])  # the whole-frame panel is the output, lossless
    bicubic = image[:h, :w]
    assert psnr(bicubic, output_at, ~box) > 20 and not np.array_equal(bicubic[~box], output_at[~box])
    crop = image[h + gap : 2 * h + gap, 2 * (w + gap) : 2 * (w + gap) + w]
    np.testing.assert_array_equal(crop[::2, ::2], crop[1::2, 1::2])  # a 2x nearest enlargement
    assert crop.std() > 5  # the most detailed part, not a flat one
    clip = picture.with_suffix(".mp4")
    side = decode_rgb(clip)
    assert len(side) == 9 and side[0].shape == (h, 3 * w + 2 * gap, 3)  # from 0.25 s to the end
    assert psnr(side[0][:, 2 * (w + gap) :], output_at) > 30


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--at", "9"], "past the end"),
        (["--at", "soon"], "expected seconds"),
        (["-o", "x.jpg"], "must end in .png"),
    ],
)
def test_compare_refuses_bad_options(sample_clip, tmp_path, extra, message):
    upscaled = tmp_path / "x4.mp4"
    ffmpeg("-i", sample_clip, "-vf", "scale=iw*4:ih*4", "-an", upscaled)
    result = run_vsr("compare", str(sample_clip), str(upscaled), *extra, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
