"""How to scale a transparent picture's alpha plane: bicubic, or the network on alpha as grey.

A sharp-edged logo (text, a disc, a thin ring, a diagonal bar) is drawn at 4x
size, anti-aliased by drawing at 16x and shrinking: that alpha is the truth.
Shrunk 4x (area average), it is the input. Each method scales it back; PSNR of
the alpha plane against the truth, over the whole picture and over the edges
only (pixels within 2 px of a transition), and the time each adds per frame.

Not a test: ``python bench/bench_alpha.py [--size 480x270]``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.upscale import bicubic_plane, choose_engine
from vsr.device import has_gpu
from vsr.frame import from_levels, to_levels
from vsr.inference import build_upscaler
from vsr.models.store import load_converted, resolve_model
from vsr.plugins import load_registry


def logo(width: int, height: int) -> np.ndarray:
    """The truth: a logo's alpha at ``width x height``, drawn at 4x that and shrunk (anti-aliased edges)."""
    big = Image.new("L", (width * 4, height * 4), 0)
    draw = ImageDraw.Draw(big)
    w, h = big.size
    draw.ellipse((w * 0.05, h * 0.1, w * 0.35, h * 0.9), fill=255)
    draw.ellipse((w * 0.40, h * 0.15, w * 0.62, h * 0.85), outline=255, width=max(4, w // 200))
    draw.polygon([(w * 0.66, h * 0.9), (w * 0.72, h * 0.9), (w * 0.95, h * 0.1), (w * 0.89, h * 0.1)], fill=255)
    try:
        font = ImageFont.load_default(size=h // 4)
    except TypeError:  # Pillow before 10.1
        font = ImageFont.load_default()
    draw.text((w * 0.08, h * 0.38), "vsr", fill=0, font=font)
    return np.asarray(big.resize((width, height), Image.Resampling.BOX))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = float(diff[mask].mean() if mask is not None else diff.mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def cpu() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "Model name" in line), "?")
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in text]
    return f"{model} ({', '.join(flags)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="480x270", help="input size WxH (the truth is 4x)")
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "realesrgan-x4plus-anime"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    truth = logo(width * 4, height * 4)
    small = np.asarray(Image.fromarray(truth).resize((width, height), Image.Resampling.BOX))
    edges = (
        np.asarray(
            Image.fromarray(((truth > 8) & (truth < 247)).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
        )
        > 0
    )
    print(f"CPU: {cpu()}; alpha {width}x{height} -> {width * 4}x{height * 4}; edge pixels {edges.mean():.1%}")
    print(f"{'method':58} {'PSNR all':>9} {'PSNR edges':>11} {'ms/frame':>9}")
    start = time.perf_counter()
    for _ in range(5):
        up = bicubic_plane(small, 4)
    ms = (time.perf_counter() - start) / 5 * 1000
    print(f"{'bicubic (FFmpeg swscale)':58} {psnr(up, truth):9.2f} {psnr(up, truth, edges):11.2f} {ms:9.1f}")
    registry = load_registry()
    engine = choose_engine(tuple(registry.engines.values().values()), has_gpu())  # what `vsr upscale` runs on
    for name in args.models:
        converted, _ = load_converted(resolve_model(registry, name))
        upscaler = build_upscaler(converted, engine=engine)
        grey = np.repeat(small[..., None], 3, axis=2)
        upscaler.upscale([grey])  # compile
        start = time.perf_counter()
        out = upscaler.upscale([grey])[0]
        ms = (time.perf_counter() - start) * 1000
        up = from_levels(to_levels(out).mean(axis=2), np.uint8)
        label = f"network: {name} ({engine.name}, {upscaler.precision})"
        print(f"{label:58} {psnr(up, truth):9.2f} {psnr(up, truth, edges):11.2f} {ms:9.1f}")


if __name__ == "__main__":
    main()
