"""Region reuse (vsr.reuse): the network runs only where the picture changed.

Judged with the real compact model against a 4x truth: a held camera with a
moving object, animation on twos through a real encoder, a seam between a
reused and a recomputed region, and a run killed half-way.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import TINY, decode_rgb, ffmpeg, run_vsr, spawn_vsr, video_pts, vsr_main, wait_for_segments
from vsr.reuse import RegionReuse

PHOTO = Path(__file__).parent / "data" / "astronaut_192.png"


@pytest.fixture(scope="module")
def compact():
    """The real compact model, built as ``vsr upscale`` builds it here (engine and precision "auto")."""
    from stages.upscale import choose_engine
    from vsr.device import has_gpu
    from vsr.inference import build_upscaler
    from vsr.models.store import load_converted, resolve_model
    from vsr.plugins import load_registry

    registry = load_registry()
    converted, _ = load_converted(resolve_model(registry, "realesr-animevideov3"))
    engine = choose_engine(tuple(registry.engines.values().values()), has_gpu())
    return build_upscaler(converted, engine=engine)


class Counting:
    """An upscaler that counts the input pixels it is given, as frames (tiled) or as windows."""

    def __init__(self, upscaler) -> None:
        self.upscaler, self.pixels = upscaler, 0
        self.tile, self.pad, self.multiple, self.batch = upscaler.tile, upscaler.pad, upscaler.multiple, upscaler.batch

    def upscale(self, frames):
        self.pixels += sum(f.shape[0] * f.shape[1] for f in frames)
        return self.upscaler.upscale(frames)

    def run_windows(self, windows):
        self.pixels += sum(w.shape[0] * w.shape[1] for w in windows)
        return self.upscaler.run_windows(windows)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * math.log10(255**2 / mse)


def _held_camera(frames: int = 10, noise: float = 1.5) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A held camera on a real photograph at 480x270, a textured object (a tenth of the picture) crossing it:
    the 4x truth and the low-resolution frames (shrunk, with compression-like noise)."""
    scene = Image.open(PHOTO).convert("RGB")
    background = np.asarray(scene.resize((1920, 1080), Image.Resampling.LANCZOS))
    thing = np.asarray(scene.crop((20, 20, 120, 120)).resize((640, 324), Image.Resampling.LANCZOS))[:, ::-1]
    rng = np.random.default_rng(7)
    truths, small = [], []
    for t in range(frames):
        truth = background.copy()
        x = 160 + 32 * t
        truth[400:724, x : x + 640] = thing
        low = np.asarray(Image.fromarray(truth).resize((480, 270), Image.Resampling.BOX)).astype(np.float64)
        truths.append(truth)
        small.append(np.clip(np.round(low + rng.normal(0, noise, low.shape)), 0, 255).astype(np.uint8))
    return truths, small


def test_a_held_camera_runs_the_network_on_little_and_stays_as_close_to_the_truth(compact):
    truths, frames = _held_camera()
    counting = Counting(compact)
    reuse = RegionReuse(4, compact.pad, None, {})
    reused = [out for frame in frames for out, _ in reuse.upscale([frame], counting)]
    whole = compact.upscale(frames)
    on = np.mean([_psnr(o, t) for o, t in zip(reused, truths, strict=True)])
    off = np.mean([_psnr(o, t) for o, t in zip(whole, truths, strict=True)])
    assert on >= off - 0.1, (on, off)
    share = counting.pixels / (len(frames) * frames[0].shape[0] * frames[0].shape[1])
    assert share < 0.5, share  # the first frame whole, then crops around the object
    assert reuse.stats.partial == len(frames) - 1 and reuse.stats.skipped == 0


def _encoded(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """``frames`` through x264 and back, as a real clip's would be."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as clip:
        return [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]


def test_animation_on_twos_skips_the_network_on_its_held_frames(compact):
    _, drawings = _held_camera(frames=6, noise=0)
    frames = _encoded([d for d in drawings for _ in range(2)], crf=23)  # each drawing held for two frames
    assert all(not np.array_equal(a, b) for a, b in zip(frames[::2], frames[1::2], strict=True))  # noise differs
    reuse = RegionReuse(4, compact.pad, None, {})
    counting = Counting(compact)
    outputs, held_pixels = [], []
    for i, frame in enumerate(frames):
        before = counting.pixels
        outputs.extend(out for out, _ in reuse.upscale([frame], counting))
        if i % 2:
            held_pixels.append((counting.pixels - before) / (frame.shape[0] * frame.shape[1]))
    # a held drawing differs by the encoder's noise only: no network, or a crop or two where x264 refines
    # what the previous frame changed (a tenth of the picture at most, but for one frame)
    assert sorted(held_pixels)[len(held_pixels) // 2] <= 0.1 and max(held_pixels) < 0.25, held_pixels
    skipped = [i for i in range(1, 12, 2) if outputs[i] is outputs[i - 1]]
    assert len(skipped) >= 2 and reuse.stats.skipped == len(skipped), held_pixels  # the same output: no flicker


def test_a_reused_region_meets_a_recomputed_one_without_a_seam(compact):
    """Reused output beside recomputed output against the whole frame recomputed: equal but for tiling's
    rounding, everywhere, the region's border included."""
    before = np.asarray(Image.open(PHOTO).convert("RGB").resize((480, 270), Image.Resampling.LANCZOS))
    after = before.copy()
    after[56:88, 112:144] = before[16:48, 16:48]  # a patch that changes
    reuse = RegionReuse(4, compact.pad, None, {})
    first, _ = reuse.upscale([before], compact)[0]
    second, _ = reuse.upscale([after], compact)[0]
    assert reuse.stats.partial == 1  # a crop was recomputed, the rest reused
    whole = compact.upscale([after])[0]
    difference = np.abs(second.astype(int) - whole)
    assert difference.max() <= 3, difference.max()
    assert not np.array_equal(second[224:352, 448:576], first[224:352, 448:576])  # the patch is new
    assert np.array_equal(second[:, 1200:], first[:, 1200:])  # the far side is the previous output's


def test_a_resumed_run_with_reuse_equals_one_pass_and_verbose_says_what_was_reused(tmp_path):
    clip = tmp_path / "held.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=12:d=3", "-f", "lavfi", "-i", "color=c=red:s=16x16:r=12:d=3",
           "-filter_complex", "[0]trim=end_frame=1,loop=-1:1,setpts=N/12/TB[bg];[bg][1]overlay=x='4*n':y=80:shortest=1",
           "-c:v", "libx264", "-crf", "23", clip)  # fmt: skip
    args = [*TINY, "--set", "encode.crf=0", "--segment", "0.25"]
    one = tmp_path / "one.mkv"
    result = vsr_main("-v", "upscale", clip, "-o", one, *args)
    assert result.returncode == 0, result.stderr
    summary = re.search(r"reuse: (\d+) of (\d+) frames skipped the network, (\d+) were partly", result.stderr)
    assert summary is not None, result.stderr
    assert int(summary[2]) == 36 and int(summary[3]) >= 20  # the box moves: crops around it, the rest reused
    out = tmp_path / "resumed.mkv"
    paced = ["--set", "decode.stage=paced", "--set", "decode.delay=0.05"]
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *args, *paced)
    wait_for_segments(tmp_path / ".vsr" / "resumed.mkv.work", proc, 2)
    proc.kill()
    proc.wait()
    resumed = run_vsr("upscale", str(clip), "-o", str(out), *args, *paced)
    assert resumed.returncode == 0 and "resuming at frame" in resumed.stderr, resumed.stderr
    a, b = decode_rgb(out), decode_rgb(one)
    assert len(a) == len(b) == 36 and video_pts(out) == video_pts(one)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(x, y), f"frame {i} differs by up to {np.abs(x.astype(int) - y).max()} levels"


def test_what_moves_in_a_clean_clip_is_never_taken_for_noise_and_a_fade_has_no_steps(compact):
    """A clean clip (a user's pass): a one-pixel dot and a faint square moving over a still picture, and the
    whole picture fading a level a frame. Reuse on equals reuse off (but for rounding): no ghost left behind,
    nothing frozen, no brightness steps."""
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((160, 96), Image.Resampling.LANCZOS)).astype(int)
    moving, fading = [], []
    for t in range(12):
        frame = photo.copy()
        frame[40, 10 + 5 * t] = 255  # a one-pixel dot
        frame[60:76, 20 + 3 * t : 36 + 3 * t] += 6  # a square six levels brighter
        moving.append(np.clip(frame, 0, 255).astype(np.uint8))
        fading.append(np.clip(photo + t, 0, 255).astype(np.uint8))
    for frames in (moving, fading):
        reuse = RegionReuse(4, compact.pad, None, {})
        on = [out for frame in frames for out, _ in reuse.upscale([frame], compact)]
        off = compact.upscale(frames)
        worst = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(on, off, strict=True))
        assert worst <= 3, (worst, reuse.stats)
