"""Peak memory of ``vsr upscale`` on large frames with the 23-block model's tiling.

Tiling bounds memory by the window, not the frame, and RRDBNet's peak is set
by its x4 tail (the last upsampled feature maps), not by its depth. Running
all 23 blocks over a whole 1080p frame takes tens of minutes on a small CPU,
so this bench measures two things, each in a fresh process:

1. ``vsr upscale --preset film`` end to end (decode, tiles, 16-bit frames,
   x265 encode, remux) on a 1920x1080 clip, with realesrgan-x4plus cut down
   to its first RRDB block (same layers and widths, real weights, same tiles);
2. one window of that size through the full 23-block network, to show the
   depth adds only its weights (about 70 MB).

``python bench/bench_memory.py [--width 1920 --height 1080 --frames 1]``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WINDOW_SCRIPT = """
import resource, sys
import numpy as np
from vsr.inference import TiledUpscaler
from vsr.models.build import build_network
from vsr.models.store import load_converted
from vsr.plugins import load_registry
net = build_network(load_converted(load_registry().model("realesrgan-x4plus"))[0], "float32")
up = TiledUpscaler(net, 4, 0, 0, 1)
up.upscale([np.zeros((16, 16, 3), np.uint8)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
h, w = int(sys.argv[1]), int(sys.argv[2])
up.upscale([np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)])
print(before // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def save_truncated(blocks: int) -> str:
    """Store realesrgan-x4plus with only its first ``blocks`` RRDB blocks; returns its name."""
    from vsr.models.converted import ConvertedModel
    from vsr.models.store import load_converted, save_model
    from vsr.plugins import load_registry

    full = load_converted(load_registry().model("realesrgan-x4plus"))[0]
    keep = {
        name: w for name, w in full.weights.items() if not name.startswith("body_") or int(name.split("_")[1]) < blocks
    }
    name = f"x4plus-{blocks}block"
    save_model(
        name,
        ConvertedModel("rrdbnet", {**full.config, "num_block": blocks}, keep),
        source_file="realesrgan-x4plus (truncated)",
        source_format="ncnn",
        description="bench only",
    )
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=1, help="RRDB blocks kept for the end-to-end run")
    parser.add_argument("--preset", default="film")
    args = parser.parse_args()

    from vsr.sample import write_sample

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "VSR_CACHE_DIR": str(Path(tmp) / "cache")}
        os.environ["VSR_CACHE_DIR"] = env["VSR_CACHE_DIR"]
        model = save_truncated(args.blocks)
        clip = write_sample(Path(tmp) / "big.mp4", seconds=args.frames / 24, width=args.width, height=args.height)
        out = Path(tmp) / "out.mkv"
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "vsr.cli.main", "upscale", str(clip), "-o", str(out), "--preset", args.preset,
             "--set", f"upscale.model={model}"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if run.returncode:
            sys.exit(f"vsr upscale failed:\n{run.stderr}")
        tiles = re.search(r"tiles of ([^,\n]+)", run.stderr)
        print(
            f"vsr upscale --preset {args.preset}, {args.width}x{args.height}, {args.frames} frame(s), "
            f"x4plus with {args.blocks} block(s): peak RSS {peak:.0f} MB, {seconds:.0f} s, "
            f"tiles of {tiles.group(1) if tiles else '?'}"
        )
        from vsr.inference import plan_windows

        size = int(tiles.group(1).split()[0]) if tiles and tiles.group(1)[0].isdigit() else 0
        context = re.search(r"context (\d+) px", run.stderr)
        pad = int(context.group(1)) if context else 0
        w = plan_windows(args.height, args.width, size, pad)[0]
        wh, ww = w.win_y[1] - w.win_y[0], w.win_x[1] - w.win_x[0]
        one = subprocess.run(
            [sys.executable, "-c", WINDOW_SCRIPT, str(wh), str(ww)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if one.returncode:
            sys.exit(f"window run failed:\n{one.stderr}")
        before, after = (int(v) for v in one.stdout.split()[-2:])
        print(
            f"one {wh}x{ww} window through all 23 blocks: RSS {before} MB after building, "
            f"peak {after} MB (+{after - before} MB for the window)"
        )


if __name__ == "__main__":
    main()
