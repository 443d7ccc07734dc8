"""Temporal smoothing: what it buys and what it costs, side by side in one run.

1. **Quality** on generated clips with known motion and truth
   (tests/motion_clips.py: a pan, a zoom, a moving object, a hard cut, cut
   from a real photograph, with sensor noise), upscaled by the real compact
   model: motion-compensated flicker, still-area flicker, PSNR against the
   truth and ghosting, unsmoothed against smoothed; and the same smoother with
   ``flow = "none"`` (no motion compensation, as vsr smoothed before).
2. **End to end**: ``vsr upscale --preset fast`` on a 160x120 clip of a
   camera moving over the photograph, without and with smoothing, ms per
   frame after the first frames (graph compilation excluded for both), best
   of ``--rounds``.
3. **Stage cost per frame** at 160x120 -> 640x480, 960x540 -> 3840x2160 and
   1920x1080 -> 7680x4320: the optical flow, then the gate with the compiled
   warp and blend, steady state, on the calling thread.

Not a test: ``python bench/bench_smooth.py [--seconds 20 --rounds 2]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import motion_clips as clips  # noqa: E402

from stages.smooth import SmoothOptions, TemporalSmoother  # noqa: E402
from vsr.frame import Colour, Frame  # noqa: E402
from vsr.inference import build_upscaler  # noqa: E402
from vsr.metrics import StabilityReport, psnr  # noqa: E402
from vsr.models.store import load_converted  # noqa: E402
from vsr.motion import FlowEstimator  # noqa: E402
from vsr.plan import plan_run  # noqa: E402
from vsr.plugins import load_registry  # noqa: E402
from vsr.running import upscale_file  # noqa: E402
from vsr.stage import Job  # noqa: E402

TB = Fraction(1, 24)


def cpu() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    model = fields.get("Model name", "?").strip()
    return f"{model} (family {fields.get('CPU family', '?').strip()} model {fields.get('Model', '?').strip()}), " + (
        f"{fields.get('CPU(s)', '?').strip()} CPUs, flags: {' '.join(wanted)}"
    )


def smooth(frames: list[Frame], **options: object) -> list[Frame]:
    stage = TemporalSmoother(SmoothOptions(**options), Job(None, None, None))  # type: ignore[arg-type]
    return list(stage.process(iter(frames)))


def quality() -> None:
    converted, _ = load_converted(load_registry().model("realesr-animevideov3"))
    upscaler = build_upscaler(converted, precision="float32", tile=0)
    objects, masks = clips.moving_object()
    cases = {"pan": clips.pan(), "zoom": clips.zoom(), "moving object": objects, "hard cut": clips.cut()}
    print("\n## Quality (realesr-animevideov3, 64x48 -> 256x192, 12 frames, sensor noise sigma 2)\n")
    print("| clip | smoothing | mc flicker | still flicker | PSNR vs truth | ghosting | trail |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, truths in cases.items():
        small = clips.inputs(truths)
        raw = [
            Frame(upscaler.upscale([lr])[0], pts=t, time_base=TB, colour=Colour(), index=t, source=lr)
            for t, lr in enumerate(small)
        ]
        for label, out in (("off", raw), ("on", smooth(raw)), ('on, flow="none"', smooth(raw, flow="none"))):
            report = StabilityReport()
            for lr, ours, plain in zip(small, out, raw, strict=True):
                report.add(lr, ours.pixels, unsmoothed=plain.pixels)
            value = float(np.mean([psnr(f.pixels, t) for f, t in zip(out, truths, strict=True)]))
            trail = "-"
            if name == "moving object" and out is not raw:
                diffs = []
                for t in range(1, len(masks)):
                    left = masks[t - 1] & ~masks[t]
                    region = cv2.dilate(left.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~masks[t]
                    diff = np.abs(out[t].pixels.astype(float) - raw[t].pixels.astype(float)).max(axis=2)
                    diffs.append(float(diff[region].mean()))
                trail = f"{np.mean(diffs):.3f}"
            ghost = "-" if out is raw else f"{report.ghosting:.3f}"
            still = "-" if math.isnan(report.flicker) else f"{report.flicker:.2f}"
            print(f"| {name} | {label} | {report.mc_flicker:.2f} | {still} | {value:.2f} dB | {ghost} | {trail} |")


def moving_camera_clip(path: Path, frames: int, width: int = 160, height: int = 120) -> Path:
    """A camera drifting over the photograph (up to ~4 px per frame), sensor noise, x264 CRF 18."""
    world = cv2.resize(clips.world(), (640, 640), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for t in range(frames):
            x = int(240 + 200 * math.sin(2 * math.pi * t / 320))
            y = int(260 + 120 * math.sin(2 * math.pi * t / 410))
            crop = cv2.resize(world[y : y + 240, x : x + 320], (width, height), interpolation=cv2.INTER_AREA)
            noisy = np.clip(crop + rng.normal(0, 2, crop.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def e2e(clip: Path, out_dir: Path, smoothing: bool, warm: int = 8) -> tuple[float, float]:
    """Wall and CPU ms per frame of ``vsr upscale --preset fast`` after the first ``warm`` frames."""
    plan = plan_run(load_registry(), "fast", smooth=smoothing)
    marks: list[tuple[float, float]] = []

    def mark(n: int) -> None:
        if n == warm:
            marks.append((time.perf_counter(), time.process_time()))

    result = upscale_file(plan, clip, out_dir / f"out-{smoothing}.mkv", force=True, on_frame=mark)
    frames = result.frames - warm
    return (time.perf_counter() - marks[0][0]) * 1000 / frames, (time.process_time() - marks[0][1]) * 1000 / frames


def end_to_end(seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = moving_camera_clip(Path(tmp) / "camera.mp4", round(seconds * 24))
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for smoothing in (False, True):  # alternated, so the machine's neighbours hit both alike
                runs[smoothing].append(e2e(clip, Path(tmp), smoothing))
    frames = round(seconds * 24)
    print(f"\n## End to end (--preset fast, 160x120 -> 640x480, {frames} frames, {rounds} alternated rounds)\n")
    print("| smoothing | wall ms/frame, best | wall, median | CPU ms/frame, median | cost (best, median, CPU) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    stats = {
        k: (min(w for w, _ in v), statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in runs.items()
    }
    off, on = stats[False], stats[True]
    print(f"| off | {off[0]:.1f} | {off[1]:.1f} | {off[2]:.1f} | - |")
    costs = ", ".join(f"{100 * (b / a - 1):+.1f} %" for a, b in zip(off, on, strict=True))
    print(f"| on | {on[0]:.1f} | {on[1]:.1f} | {on[2]:.1f} | {costs} |")


def stage_cost(height: int, width: int, repeats: int) -> tuple[float, float]:
    """Median ms per frame of the flow and of the compiled blend for ``height`` x ``width`` inputs."""
    world = cv2.resize(clips.world(), (width + 64, height + 64), interpolation=cv2.INTER_CUBIC)
    small = [np.ascontiguousarray(world[8 : 8 + height, 8 + 2 * t : 8 + 2 * t + width]) for t in range(2)]
    large = [cv2.resize(s, (width * 4, height * 4), interpolation=cv2.INTER_CUBIC) for s in small]
    stage = TemporalSmoother(SmoothOptions(), Job(None, None, None))  # type: ignore[arg-type]
    flow = FlowEstimator(SmoothOptions().flow)
    stage.blend(large[1], large[0], small[1], small[0])  # compiles
    flows, blends = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        motion = flow(small[0], small[1])
        middle = time.perf_counter()
        stage.blend(large[1], large[0], small[1], small[0], motion)
        flows.append(middle - start)
        blends.append(time.perf_counter() - middle)
    return statistics.median(flows) * 1000, statistics.median(blends) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="end-to-end clip length")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "e2e", "stage"])
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    if "quality" not in args.skip:
        quality()
    if "e2e" not in args.skip:
        end_to_end(args.seconds, args.rounds)
    if "stage" not in args.skip:
        print("\n## Stage cost per frame (median. flow: DIS 'fast'; blend: gate, then compiled warp and blend)\n")
        print("| input -> output | flow ms | blend ms | total ms |")
        print("| --- | ---: | ---: | ---: |")
        for height, width, repeats in ((120, 160, 30), (540, 960, 10), (1080, 1920, 5)):
            flow_ms, blend_ms = stage_cost(height, width, repeats)
            size = f"{width}x{height} -> {width * 4}x{height * 4}"
            print(f"| {size} | {flow_ms:.1f} | {blend_ms:.1f} | {flow_ms + blend_ms:.1f} |")


if __name__ == "__main__":
    main()
