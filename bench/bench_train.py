"""Training speed: seconds per step of each stage, for a recipe, on this machine.

Not a test: ``python bench/bench_train.py [--recipe tiny|esrgan] [--steps 3] [--batch N]``.
Uses random VGG19 weights (the speed is the same as with ImageNet's) and
pairs cut from the built-in sample clip.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.extract import ExtractOptions, extract
from vsr.sample import write_sample
from vsr.training.trainer import Recipe, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = write_sample(root / "clip.mp4", seconds=2, width=512, height=288, fps=12, audio=False)
        extract([clip], root / "pairs", ExtractOptions(every=2, min_change=0, crop=128))
        overrides = {"psnr_steps": args.steps + 1, "gan_steps": args.steps + 1, "batch": args.batch}
        recipe = Recipe.load(args.recipe, overrides)
        trainer = Trainer(recipe, root / "pairs", root / "run", vgg_weights=None)
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
                f"patch {recipe.patch}) {stage} stage: {per_step:.2f} s/step ({1 / per_step:.2f} steps/s)"
            )


if __name__ == "__main__":
    main()
