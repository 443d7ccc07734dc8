"""Speed of vsr's engines against ncnn on the same Real-ESRGAN weights and frames.

For each built-in model, on the same frames of the built-in sample scene:

- ncnn: the reference engine (PyPI ``ncnn``), model only, in both its CPU
  modes: float32 throughout, and ``use_bf16_storage`` (bfloat16 weights and
  activations, float32 arithmetic);
- vsr model-only, per engine (``keras``: TensorFlow; ``openvino``) and
  precision: the compiled network through the tiler, frames in memory;
- vsr end-to-end: ``vsr upscale`` on a clip of those frames (decode, colour
  conversion, inference, encode, remux), with the model's preset, that
  engine and precision, temporal smoothing off (bench_smooth.py measures it).

Prints ms/frame, the ratios against ncnn's faster mode, and the quality cost
against vsr's float32 output (Keras engine): PSNR, the largest difference and
the 99.9th percentile, in 8-bit levels. ``--hd`` adds ``vsr upscale --preset
P`` on a 1920x1080 clip (to 3840x2160, presets as they are), each in a fresh
process for its peak RSS. Not a test: run it by hand,
``python bench/bench_upscale.py [--models ...] [--engines keras openvino] [--hd fast anime film]``.
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
from vsr.running import upscale_file
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


def cpu_line() -> str:
    """The CPU model and the flags that decide the fast paths, from lscpu (compare only figures from one run)."""
    import subprocess

    from vsr.device import cpu_flags

    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        info = ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    model = " ".join(f"{k} {fields.get(k, '?').strip()}" for k in ("Model name", "CPU family", "Model"))
    flags = sorted(cpu_flags() & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "avx512_fp16"})
    return f"{model}; flags: {' '.join(flags)}; {os.cpu_count()} CPUs"


def ncnn_run(stem: str, frames: list[np.ndarray], threads: int, rounds: int, bf16: bool) -> tuple[float, np.ndarray]:
    """ncnn's frames per second (float32 throughout, or bfloat16 storage) and its outputs as 8-bit pixels."""
    import ncnn

    from stages.realesrgan import weights_dir

    net = ncnn.Net()
    net.opt.num_threads = threads
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"):
        setattr(net.opt, flag, False)
    net.opt.use_bf16_storage = bf16
    net.load_param(str(weights_dir() / f"{stem}.param"))
    net.load_model(str(weights_dir() / f"{stem}.bin"))

    def run(img: np.ndarray) -> np.ndarray:
        chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0
        ex = net.create_extractor()
        ex.input("data", ncnn.Mat(chw))
        _, out = ex.extract("output")
        return np.array(out)

    run(frames[0])  # warm-up
    fps = best_rate(lambda: [run(f) for f in frames], len(frames), rounds)
    outputs = [np.round(np.clip(run(f).transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8) for f in frames]
    return fps, np.stack(outputs)


def make_upscaler(model: str, preset_name: str, engine: str, precision: str) -> TiledUpscaler:
    """The tiled network exactly as ``vsr upscale --preset PRESET`` builds it, on ``engine`` in ``precision``."""
    registry = load_registry()
    upscale = plan_run(registry, preset_name, model=model).stage("upscale")
    assert upscale is not None
    opts = upscale.options
    return build_upscaler(
        load_converted(upscale.prepared.resource.spec)[0],
        engine=registry.engines.get(engine),
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


def vsr_e2e_fps(
    model: str | None, preset_name: str, overrides: list[str], clip: Path, out_dir: Path, warm: int, smooth: bool | None
) -> float:
    """``vsr upscale`` on a clip of warm + N frames (+1 with smoothing), timed from the first call's frames out.

    The first network call (``warm`` frames) includes building and compiling the
    graph, which the model-only figure leaves out too. The temporal smoother
    hands a frame on when the next one arrives (it blends while the encoder
    writes), so with smoothing the first frames leave one upscale later and
    one frame fewer is timed.
    """
    plan = plan_run(load_registry(), preset_name, model=model, overrides=overrides, smooth=smooth)
    lag = 1 if plan.stage("smooth") is not None else 0
    marks: list[float] = []
    result = upscale_file(
        plan,
        clip,
        out_dir / f"{preset_name}.mkv",
        force=True,
        on_frame=lambda n: marks.append(time.perf_counter()) if n == warm else None,
    )
    end = time.perf_counter()
    return (result.frames - warm - lag) / (end - marks[0])


def quality(out: np.ndarray, reference: np.ndarray) -> tuple[float, int, float]:
    """PSNR (dB), largest difference and its 99.9th percentile in 8-bit levels of ``out`` against ``reference``."""
    diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
    mse = float(np.mean(diff**2))
    return (10 * math.log10(255**2 / mse) if mse else math.inf), int(diff.max()), float(np.percentile(diff, 99.9))


def hd_child(preset: str, engine: str, frames: int) -> None:
    """One preset on a 1920x1080 clip, in this (fresh) process: prints s/frame and peak RSS as JSON."""
    import json
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the upscale log line names engine and precision
    with tempfile.TemporaryDirectory() as tmp:
        # one warm-up frame, and one more for the smoother's lag (vsr_e2e_fps)
        clip = write_sample(Path(tmp) / "hd.mp4", seconds=(frames + 2) / 24, width=1920, height=1080, fps=24)
        rate = vsr_e2e_fps(None, preset, [f"upscale.engine={engine}"], clip, Path(tmp), 1, None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"preset": preset, "s_per_frame": 1 / rate, "peak_mb": peak}))


def hd_rows(presets: list[str], engines: list[str], frames: int) -> list[str]:
    import json
    import subprocess

    rows = []
    for preset in presets:
        for engine in engines:
            child = subprocess.run(
                [sys.executable, __file__, "--hd-child", preset, "--hd-engine", engine, "--hd-frames", str(frames)],
                capture_output=True,
                text=True,
                check=True,
            )
            found = json.loads(child.stdout.strip().splitlines()[-1])
            log = next((line for line in child.stderr.splitlines() if "upscale:" in line), "")
            used = log.partition(" with the ")[2].partition(",")[0]
            rows.append(f"{preset:8} {found['s_per_frame']:7.1f} s/frame  peak RSS {found['peak_mb']:5.0f} MB  {used}")
            print("...", rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--frames", type=int, default=4, help="timed frames, model-only (a multiple of 4)")
    parser.add_argument("--rounds", type=int, default=2, help="model-only and ncnn: best of this many runs")
    parser.add_argument("--e2e-seconds", type=float, default=20.0, help="end-to-end clips last about this long")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ncnn threads")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--engines", nargs="*", default=["keras", "openvino"])
    parser.add_argument("--precisions", nargs="*", default=["float32", "bfloat16"])
    parser.add_argument("--hd", nargs="*", default=[], help="presets to run on a 1920x1080 clip")
    parser.add_argument("--hd-engines", nargs="*", default=["auto"], help="engines for the 1080p rows")
    parser.add_argument("--hd-frames", type=int, default=2, help="timed 1080p frames (after one warm-up frame)")
    parser.add_argument("--hd-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--hd-engine", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hd_child:
        hd_child(args.hd_child, args.hd_engine, args.hd_frames)
        return

    print(cpu_line(), flush=True)
    frames = [cartoon_frame(i, args.width, args.height, 24) for i in range(args.frames)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            preset, stem = MODELS[model]
            # the quality columns compare with the Keras engine's float32 output, run first
            up = make_upscaler(model, preset, "keras", "float32")
            reference = vsr_model_fps(up, frames, 1)[1]
            del up
            ncnn = {}
            for mode, bf16 in (("fp32", False), ("bf16 storage", True)):
                rate, out = ncnn_run(stem, frames, args.threads, args.rounds, bf16)
                ncnn[mode] = rate
                rows.append((model, "ncnn", mode, rate, math.nan, *quality(out, reference)))
                print(f"... {model}: ncnn {mode} {1000 / rate:.0f} ms", flush=True)
            best_ncnn = max(ncnn.values())
            for engine in args.engines:
                for precision in args.precisions:
                    up = make_upscaler(model, preset, engine, precision)
                    got = up.precision
                    m, out = vsr_model_fps(up, frames, args.rounds)
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
                    # the upscaler's path alone, comparable with ncnn's: smoothing is bench_smooth.py's
                    overrides = [f"upscale.precision={precision}", f"upscale.engine={engine}"]
                    e = vsr_e2e_fps(model, preset, overrides, clip, Path(tmp), warm, False)
                    rows.append((model, engine, got, m, e, *quality(out, reference)))
                    print(
                        f"... {model} {engine} {got}: model {1000 / m:.0f} ms ({m / best_ncnn:.2f}x ncnn's best), "
                        f"end-to-end {1000 / e:.0f} ms ({e / best_ncnn:.2f}x)",
                        flush=True,
                    )
            rows.append((model, "", "", best_ncnn, math.nan, math.nan, -1, math.nan))
    hd = hd_rows(args.hd, args.hd_engines, args.hd_frames) if args.hd else []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.width}x{args.height} -> {4 * args.width}x{4 * args.height}, {args.frames} frames model-only "
        f"(best of {args.rounds}), process peak RSS {peak:.0f} MB\n{cpu_line()}"
    )
    header = (
        f"{'model':24} {'engine':8} {'precision':12} {'model ms':>8} {'e2e ms':>7} {'model/ncnn':>10}"
        f" {'e2e/ncnn':>8} {'PSNR vs fp32':>12} {'max':>4} {'p99.9':>5}"
    )
    print(header)
    print("-" * len(header))
    best = {model: rate for model, engine, *_, rate in [(r[0], r[1], r[3]) for r in rows if not r[1]]}
    for model, engine, precision, m, e, psnr, worst, p999 in rows:
        if not engine:
            continue
        b = best[model]
        e_ms, e_ratio = ("-", "-") if math.isnan(e) else (f"{1000 / e:.0f}", f"{e / b:.2f}x")
        if (engine, precision) == ("keras", "float32"):
            q = ("reference", "", "")
        elif math.isinf(psnr):
            q = ("identical", "0", "0")
        else:
            q = (f"{psnr:.1f} dB", str(worst), f"{p999:.0f}")
        print(
            f"{model:24} {engine:8} {precision:12} {1000 / m:8.0f} {e_ms:>7} {m / b:9.2f}x {e_ratio:>8}"
            f" {q[0]:>12} {q[1]:>4} {q[2]:>5}"
        )
    print("(ratios are fps ratios against ncnn's faster mode: above 1.0x means vsr is faster;")
    print(" quality: model-only output against the Keras engine's float32 output, 8-bit levels)")
    if hd:
        print("\n1920x1080 -> 3840x2160, vsr upscale --preset P (precision auto), after one warm-up frame:")
        print("\n".join(hd))


if __name__ == "__main__":
    main()
