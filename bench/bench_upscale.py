"""Speed of vsr against ncnn on the same Real-ESRGAN weights and frames.

For each built-in model, on the same frames of the built-in sample scene:

- ncnn: the reference engine (PyPI ``ncnn``), model only, its CPU defaults;
- vsr model-only: our compiled Keras network through the tiler, frames in memory;
- vsr end-to-end: ``vsr upscale`` on a clip of those frames (decode, colour
  conversion, inference, encode, remux), with the model's preset.

Prints ms/frame, fps and the ratios side by side. Not a test: run it by hand,
``python bench/bench_upscale.py [--width 160 --height 120 --frames 4]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.inference import TiledUpscaler
from vsr.models.build import build_network
from vsr.models.store import load_converted
from vsr.plugins import load_registry
from vsr.presets import resolve_preset
from vsr.run import upscale_file
from vsr.sample import cartoon_frame, write_sample

MODELS = {  # model -> (preset, ncnn file stem)
    "realesr-animevideov3": ("fast", "REALESRGAN_ANIMAVIDEOV3_UP4X"),
    "realesrgan-x4plus-anime": ("anime", "REALESRGAN_X4PLUSANIME_UP4X"),
    "realesrgan-x4plus": ("film", "REALESRGAN_X4PLUS_UP4X"),
}


def ncnn_fps(stem: str, frames: list[np.ndarray], threads: int) -> float:
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
    start = time.perf_counter()
    for f in frames:
        run(f)
    return len(frames) / (time.perf_counter() - start)


def _upscale_opts(preset_name: str) -> dict:
    return resolve_preset(load_registry(), preset_name).tables["upscale"]


def frames_per_call(preset_name: str, height: int, width: int) -> int:
    opts = _upscale_opts(preset_name)
    return TiledUpscaler(
        None, 4, opts.get("tile", 256), opts.get("tile_pad", 48), opts.get("batch", 1)
    ).frames_per_call(height, width)


def vsr_model_fps(model: str, preset_name: str, frames: list[np.ndarray]) -> float:
    """Frames through the compiled, tiled network, after one warm-up call."""
    registry = load_registry()
    opts = _upscale_opts(preset_name)
    net = build_network(load_converted(registry.model(model))[0], opts.get("precision", "float32"))
    up = TiledUpscaler(net, 4, opts.get("tile", 256), opts.get("tile_pad", 48), opts.get("batch", 1))
    per_call = up.frames_per_call(*frames[0].shape[:2])
    up.upscale(frames[:per_call])  # compile
    start = time.perf_counter()
    for i in range(0, len(frames), per_call):
        up.upscale(frames[i : i + per_call])
    return len(frames) / (time.perf_counter() - start)


def vsr_e2e_fps(model: str, preset_name: str, clip: Path, out_dir: Path, warm: int) -> float:
    """``vsr upscale`` on a clip of warm + N frames, timed from the first call's frames out to the end.

    The first network call (``warm`` frames) includes building and compiling the
    graph, which the model-only figure leaves out too.
    """
    registry = load_registry()
    preset = resolve_preset(registry, preset_name).with_overrides([f"upscale.model={model}"])
    marks: list[float] = []
    result = upscale_file(
        registry,
        preset,
        clip,
        out_dir / f"{model}.mkv",
        force=True,
        on_frame=lambda n: marks.append(time.perf_counter()) if n == warm else None,
    )
    end = time.perf_counter()
    return (result.frames - warm) / (end - marks[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--frames", type=int, default=8, help="timed frames (a multiple of 4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ncnn threads")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()

    frames = [cartoon_frame(i, args.width, args.height, 24) for i in range(args.frames)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            preset, stem = MODELS[model]
            warm = frames_per_call(preset, args.height, args.width)
            clip = write_sample(
                Path(tmp) / f"{model}.mp4",
                seconds=(args.frames + warm) / 24,
                width=args.width,
                height=args.height,
                fps=24,
                audio=True,
            )
            n = ncnn_fps(stem, frames, args.threads)
            m = vsr_model_fps(model, preset, frames)
            e = vsr_e2e_fps(model, preset, clip, Path(tmp), warm)
            rows.append((model, n, m, e))
            print(f"... {model}: ncnn {n:.3f} fps, vsr model {m:.3f} fps, vsr end-to-end {e:.3f} fps", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.width}x{args.height} -> {4 * args.width}x{4 * args.height}, {args.frames} frames, "
        f"{os.cpu_count()} CPUs, process peak RSS {peak:.0f} MB"
    )
    header = f"{'model':26} {'ncnn ms':>9} {'vsr model ms':>13} {'vsr e2e ms':>11} {'model/ncnn':>11} {'e2e/model':>10}"
    print(header)
    print("-" * len(header))
    for model, n, m, e in rows:
        print(f"{model:26} {1000 / n:9.0f} {1000 / m:13.0f} {1000 / e:11.0f} {m / n:10.2f}x {e / m:9.2f}x")
    print("(ratios are fps ratios: above 1.0x means vsr is faster)")


if __name__ == "__main__":
    main()
