"""Model-only speed on a GPU, per precision: fps and the share of the card's bf16 peak.

Meant for a machine with a GPU and JAX (``KERAS_BACKEND=jax``), where TensorFlow
may be missing: the networks and the tiler are Keras 3 layers and ``keras.ops``
only. Frames go through :class:`vsr.inference.TiledUpscaler` exactly as in
``vsr upscale`` (uint8 in, normalise, network, quantise, uint8 back on the
host), whole frames by default, ``--batch`` frames per call.

``KERAS_BACKEND=jax python bench/bench_gpu.py [--model realesrgan-x4plus --width 1280 --height 720]``

It runs on a CPU too (small sizes only), which is how it is checked without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Dense bf16/fp16 tensor-core peak, TFLOP/s, by device name (NVIDIA's data sheets, SXM parts).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def conv_flops(network: object, height: int, width: int) -> float:
    """Multiply-adds x 2 of every convolution for one ``height`` x ``width`` frame."""
    import keras

    convs = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(network.inputs, [layer.output for layer in convs])
    specs = probe.compute_output_spec(keras.KerasTensor((1, height, width, 3)))
    total = 0.0
    for layer, spec in zip(convs, specs, strict=True):
        kh, kw, cin, cout = layer.kernel.shape
        total += 2.0 * spec.shape[1] * spec.shape[2] * kh * kw * cin * cout
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--batch", type=int, default=2, help="frames per network call")
    parser.add_argument("--frames", type=int, default=8, help="timed frames")
    parser.add_argument("--tile", type=int, default=0, help="0: whole frames")
    parser.add_argument("--precisions", nargs="*", default=["float16", "bfloat16", "float32"])
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the card's bf16 peak; default: by name")
    args = parser.parse_args()

    import keras

    from vsr.device import describe_device
    from vsr.inference import TiledUpscaler
    from vsr.models.build import build_network
    from vsr.models.store import load_converted
    from vsr.plugins import load_registry
    from vsr.sample import cartoon_frame

    device = describe_device()
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device), 0.0)
    converted = load_converted(load_registry().model(args.model))[0]
    frames = [cartoon_frame(i, args.width, args.height, 24) for i in range(args.batch)]
    print(f"{args.model}, {args.width}x{args.height} -> x4, batch {args.batch}, on {device}", flush=True)
    reference = None
    rows = []
    for precision in args.precisions:
        net = build_network(converted, precision)
        flops = conv_flops(net, args.height, args.width)
        up = TiledUpscaler(net, converted.scale, args.tile, 48, args.batch)
        start = time.perf_counter()
        first = up.upscale(frames)  # compiles
        compile_s = time.perf_counter() - start
        calls = max(1, args.frames // args.batch)
        start = time.perf_counter()
        for _ in range(calls):
            up.upscale(frames)
        per_frame = (time.perf_counter() - start) / (calls * args.batch)
        out = np.stack(first).astype(np.float64)
        if reference is None and precision == "float32":
            reference = out
        rows.append((precision, per_frame, flops, compile_s, out))
        print(f"... {precision}: {1 / per_frame:.2f} fps (first call {compile_s:.1f} s)", flush=True)
        del net, up
        keras.backend.clear_session()

    header = f"{'precision':10} {'ms/frame':>9} {'fps':>7} {'TFLOP/s':>8} {'of peak':>8}"
    header += f" {'PSNR vs fp32':>13} {'max diff':>9}"
    print(header)
    print("-" * len(header))
    for precision, per_frame, flops, _, out in rows:
        tflops = flops / per_frame / 1e12
        share = f"{100 * tflops / peak:7.1f}%" if peak else "      ?"
        if reference is None or precision == "float32":
            quality = f"{'-':>13} {'-':>9}"
        else:
            mse = float(np.mean((out - reference) ** 2))
            psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
            quality = f"{psnr:10.1f} dB {int(np.abs(out - reference).max()):6d} lv"
        print(f"{precision:10} {1000 * per_frame:9.1f} {1 / per_frame:7.2f} {tflops:8.1f} {share} {quality}")
    print(f"({flops / 1e9:.1f} GFLOP per frame; peak: {peak or 'unknown'} TFLOP/s dense bf16)")


if __name__ == "__main__":
    main()
