"""Speed of vsr against ncnn on the same Real-ESRGAN weights and frames.

For each built-in model, on the same frames of the built-in sample scene:

- ncnn: the reference engine (PyPI ``ncnn``), model only, its CPU defaults;
- vsr model-only: our compiled Keras network through the tiler, frames in memory;
- vsr end-to-end: ``vsr upscale`` on a clip of those frames (decode, colour
  conversion, inference, encode, remux), with the model's preset, temporal
  smoothing off (bench_smooth.py measures its cost).

Prints ms/frame, fps and the ratios side by side. Not a test: run it by hand,
``python bench/bench_upscale.py [--width 160 --height 120 --precisions float32 bfloat16]``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.inference import TiledUpscaler, build_upscaler
from vsr.models.store import load_converted
from vsr.plan import plan_run
from vsr.plugins import load_registry
from vsr.run import upscale_file
from vsr.sample import cartoon_frame, write_sample

MODELS = {  # model -> (preset, ncnn file stem)
    "realesr-animevideov3": ("fast", "REALESRGAN_ANIMAVIDEOV3_UP4X"),
    "realesrgan-x4plus-anime": ("anime", "REALESRGAN_X4PLUSANIME_UP4X"),
    "realesrgan-x4plus": ("film", "REALESRGAN_X4PLUS_UP4X"),
}


def best_rate(run: Callable[[], None], frames: int, rounds: int) -> float:
    """Frames per second of the fastest of ``rounds`` runs (this machine's neighbours make single runs noisy)."""
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return frames / best


def ncnn_fps(stem: str, frames: list[np.ndarray], threads: int, rounds: int) -> float:
    import ncnn

    from stages.realesrgan import weights_dir

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.load_param(str(weights_dir() / f"{stem}.param"))
    net.load_model(str(weights_dir() / f"{stem}.bin"))

    def run(img: np.ndarray) -> np.ndarray:
        chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0
        ex = net.create_extractor()
        ex.input("data", ncnn.Mat(chw))
        _, out = ex.extract("output")
        return np.array(out)

    run(frames[0])  # warm-up
    return best_rate(lambda: [run(f) for f in frames], len(frames), rounds)


def make_upscaler(model: str, preset_name: str, precision: str) -> TiledUpscaler:
    """The tiled network exactly as ``vsr upscale --preset PRESET`` builds it, in ``precision``."""
    upscale = plan_run(load_registry(), preset_name, model=model).stage("upscale")
    assert upscale is not None
    opts = upscale.options
    return build_upscaler(
        load_converted(upscale.prepared.resource)[0],
        precision=precision,
        tile=opts.tile,
        pad=opts.tile_pad,
        batch=opts.batch,
    )


def vsr_model_fps(up: TiledUpscaler, frames: list[np.ndarray], rounds: int) -> tuple[float, np.ndarray]:
    """Frames through the compiled, tiled network, after one warm-up call; and the outputs."""
    per_call = up.frames_per_call(*frames[0].shape[:2])
    up.upscale(frames[:per_call])  # compile
    outputs: list[np.ndarray] = []

    def run() -> None:
        outputs.clear()
        for i in range(0, len(frames), per_call):
            outputs.extend(up.upscale(frames[i : i + per_call]))

    return best_rate(run, len(frames), rounds), np.stack(outputs)


def vsr_e2e_fps(model: str, preset_name: str, precision: str, clip: Path, out_dir: Path, warm: int) -> float:
    """``vsr upscale`` on a clip of warm + N frames, timed from the first call's frames out to the end.

    The first network call (``warm`` frames) includes building and compiling the
    graph, which the model-only figure leaves out too.
    """
    overrides = [f"upscale.precision={precision}"]
    # the upscaler's path alone, comparable with ncnn's: smoothing (on in anime and fast) is bench_smooth.py's
    plan = plan_run(load_registry(), preset_name, model=model, overrides=overrides, smooth=False)
    marks: list[float] = []
    result = upscale_file(
        plan,
        clip,
        out_dir / f"{model}.mkv",
        force=True,
        on_frame=lambda n: marks.append(time.perf_counter()) if n == warm else None,
    )
    end = time.perf_counter()
    return (result.frames - warm) / (end - marks[0])


def quality(out: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """PSNR (dB) and largest difference in 8-bit levels of ``out`` against the float32 output."""
    diff = out.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff**2))
    return (10 * math.log10(255**2 / mse) if mse else math.inf), int(np.abs(diff).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--frames", type=int, default=4, help="timed frames, model-only (a multiple of 4)")
    parser.add_argument("--rounds", type=int, default=2, help="model-only and ncnn: best of this many runs")
    parser.add_argument("--e2e-seconds", type=float, default=20.0, help="end-to-end clips last about this long")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ncnn threads")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--precisions", nargs="*", default=["float32", "bfloat16", "float16"])
    args = parser.parse_args()

    frames = [cartoon_frame(i, args.width, args.height, 24) for i in range(args.frames)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            preset, stem = MODELS[model]
            n = ncnn_fps(stem, frames, args.threads, args.rounds)
            print(f"... {model}: ncnn {n:.3f} fps", flush=True)
            # the quality columns compare with float32's output, run first whatever the order asked for
            precisions = sorted(args.precisions, key=lambda p: p != "float32")
            reference = None
            for precision in precisions:
                up = make_upscaler(model, preset, precision)
                m, out = vsr_model_fps(up, frames, args.rounds)
                if precision == "float32":
                    reference = out
                warm = up.frames_per_call(args.height, args.width)
                del up
                # long enough that the pipeline's fixed costs (encoder flush, remux, rename) do not dominate
                e2e_frames = max(args.frames, min(96, round(args.e2e_seconds * m)))
                clip = write_sample(
                    Path(tmp) / f"{model}.mp4",
                    seconds=(e2e_frames + warm) / 24,
                    width=args.width,
                    height=args.height,
                    fps=24,
                    audio=True,
                )
                e = vsr_e2e_fps(model, preset, precision, clip, Path(tmp), warm)
                psnr, worst = quality(out, reference) if reference is not None else (math.nan, -1)
                rows.append((model, precision, n, m, e, psnr, worst))
                print(f"... {model} {precision}: vsr model {m:.3f} fps, end-to-end {e:.3f} fps", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.width}x{args.height} -> {4 * args.width}x{4 * args.height}, {args.frames} frames model-only "
        f"(best of {args.rounds}), {os.cpu_count()} CPUs, process peak RSS {peak:.0f} MB"
    )
    header = (
        f"{'model':24} {'precision':9} {'ncnn ms':>8} {'model ms':>9} {'e2e ms':>8} {'model/ncnn':>10}"
        f" {'e2e/ncnn':>9} {'e2e/model':>9} {'PSNR vs fp32':>12} {'max diff':>8}"
    )
    print(header)
    print("-" * len(header))
    for model, precision, n, m, e, psnr, worst in rows:
        print(
            f"{model:24} {precision:9} {1000 / n:8.0f} {1000 / m:9.0f} {1000 / e:8.0f} {m / n:9.2f}x"
            f" {e / n:8.2f}x {e / m:8.2f}x {psnr:9.1f} dB {worst:5d} lv"
        )
    print("(ratios are fps ratios: above 1.0x means vsr is faster; quality: model-only output against float32)")


if __name__ == "__main__":
    main()
