"""Training: seconds per step per stage and precision, and what a short run gives on held-out pairs.

Not a test. Two modes:

- ``python bench/bench_train.py [--recipe tiny|esrgan] [--steps 3] [--batch N]``: s/step of each stage,
  float32 against the mixed policy ``auto`` picks here (bfloat16 on CPUs with native bf16).
- ``python bench/bench_train.py --quality [--photos DIR] [--steps 400]``: a clip made from photographs
  (slow pans over each; ``DIR`` holds PNG/JPEG files, else the built-in cartoon sample), clean pairs from
  ``vsr extract``, then a short PSNR-stage run of a small RRDBNet (32 features, 2 blocks) per precision.
  Prints the held-out table (bicubic, EMA, generator), s/step and the share of time spent waiting for data.

Uses random VGG19 weights (the speed is the same as with ImageNet's).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.extract import ExtractOptions, extract
from vsr.media import read_png
from vsr.sample import write_sample
from vsr.training.evaluate import Score, table
from vsr.training.trainer import Recipe, Trainer


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = set(lines.get("Flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (
        f"{lines.get('Model name', '?').strip()} (family {lines.get('CPU family', '?').strip()}, "
        f"model {lines.get('Model', '?').strip()}), {lines.get('CPU(s)', '?').strip()} CPUs, {' '.join(wanted)}"
    )


def photo_clip(photos: list[Path], path: Path, side: int = 256, frames: int = 24) -> Path:
    """A clip of slow pans over each photo (``side`` x ``side`` window, 1 px per frame)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": "12"})
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for photo in photos:
            rgb = read_png(photo)
            if min(rgb.shape[:2]) < side + frames:
                continue
            for i in range(frames):
                window = np.ascontiguousarray(rgb[i : i + side, i : i + side])
                frame = av.VideoFrame.from_ndarray(window, format="rgb24")
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def speed(args: argparse.Namespace, root: Path) -> None:
    clip = write_sample(root / "clip.mp4", seconds=2, width=512, height=288, fps=12, audio=False)
    extract([clip], root / "pairs", ExtractOptions(every=2, min_change=0, crop=128))
    for precision in ("float32", "auto"):
        overrides = {"psnr_steps": args.steps + 1, "gan_steps": args.steps + 1, "batch": args.batch}
        recipe = Recipe.load(args.recipe, {**overrides, "precision": precision})
        trainer = Trainer(recipe, root / "pairs", root / f"run-{precision}", vgg_weights=None)
        rng = np.random.default_rng(0)
        lr = rng.random((recipe.batch, recipe.patch // 4, recipe.patch // 4, 3), dtype=np.float32)
        hr = rng.random((recipe.batch, recipe.patch, recipe.patch, 3), dtype=np.float32)
        for stage in ("psnr", "gan"):
            trainer.train_step(lr, hr)  # tracing and first call
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step(lr, hr)
            per_step = (time.perf_counter() - start) / args.steps
            print(
                f"{recipe.name} (RRDB {recipe.num_block} blocks, {recipe.num_feat} feat; batch {recipe.batch}, "
                f"patch {recipe.patch}) {stage} stage, {trainer.precision}: {per_step:.3f} s/step"
            )


def quality(args: argparse.Namespace, root: Path) -> None:
    if args.photos:
        photos = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        clip = photo_clip(photos, root / "photos.mp4")
    else:
        clip = write_sample(root / "clip.mp4", seconds=4, width=512, height=288, fps=12, audio=False)
    opts = ExtractOptions(every=3, min_change=0, crop=256, seed=0)
    opts.degradation.enabled = False  # clean pairs: what the model learns is the upscaling itself
    manifest = extract([clip], root / "pairs", opts)
    print(f"{len(manifest['pairs'])} clean pairs of 256 px from {clip.name}")
    networks = {
        "RRDBNet 32 feat, 2 blocks": {"arch": "rrdbnet", "num_feat": 32, "num_block": 2, "num_grow_ch": 16},
        "compact 32 feat, 8 convs": {"arch": "srvgg", "num_feat": 32, "num_conv": 8},
    }
    for (label, network), precision in itertools.product(networks.items(), ("float32", "auto")):
        overrides = {
            **network, "batch": 4, "psnr_steps": args.steps, "gan_steps": 0, "val_fraction": 0.2,
            "precision": precision, "psnr_lr": 2e-4, "log_every": 1000, "val_every": 100000,
            "checkpoint_every": 100000,
        }  # fmt: skip
        run_dir = root / f"q-{network['arch']}-{precision}"
        trainer = Trainer(Recipe.load("tiny", overrides), root / "pairs", run_dir, vgg_weights=None)
        start = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - start
        evaluation = trainer.evaluate()
        print(
            f"\n{label}, {trainer.precision}: {args.steps} PSNR steps in {seconds:.0f} s "
            f"({seconds / args.steps:.3f} s/step), "
            f"data wait {100 * trainer.data_wait_fraction:.1f} % of step time; exported {evaluation['exported']}"
        )
        print(table([Score(**row) for row in evaluation["rows"]], evaluation["exported"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tiny")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--photos", default=None)
    args = parser.parse_args()
    print(cpu_model())
    with tempfile.TemporaryDirectory() as tmp:
        if args.quality:
            args.steps = args.steps or 400
            quality(args, Path(tmp))
        else:
            args.steps = args.steps or 3
            speed(args, Path(tmp))


if __name__ == "__main__":
    main()
