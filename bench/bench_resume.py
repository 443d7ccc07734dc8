"""Work a kill costs: ``vsr upscale`` killed half-way and run again, against one uninterrupted run.

For each segment policy (``--checkpoint`` seconds of work, and the old rule
of 10 s of video with no work bound, for comparison), on the same clip:

1. T: one uninterrupted run (fresh process, model already converted);
2. a run killed with SIGKILL at ``--kill-at`` of T (K seconds in);
3. R: the rerun, which resumes from the kept segments.

Work lost is K + R - T: what the kill cost beyond the uninterrupted run. It
includes one more process start (Python, TensorFlow, building the network),
printed as S, measured on a one-frame clip. With segments closed by work,
lost - S stays under about ``--checkpoint`` whatever the model and machine.

``python bench/bench_resume.py [--preset anime] [--seconds 10] [--checkpoint 15]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    model = re.search(r"Model name:\s*(.+)", info)
    flags = re.search(r"Flags:\s*(.+)", info)
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    have = [f for f in wanted if flags and f in flags.group(1).split()]
    return f"{model.group(1).strip() if model else '?'} ({', '.join(have) or 'no AVX2'})"


def command(clip: Path, out: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "vsr.cli.main", "upscale", str(clip), "-o", str(out), *args]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        sys.exit(f"vsr failed:\n{result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="anime")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (24 fps)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--checkpoint", type=float, default=15.0)
    parser.add_argument("--kill-at", type=float, default=0.6, help="fraction of the uninterrupted time")
    opts = parser.parse_args()

    from vsr.sample import write_sample

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = write_sample(root / "clip.mp4", seconds=opts.seconds, width=opts.width, height=opts.height, fps=24)
        one = write_sample(root / "one.mp4", seconds=1 / 24, width=opts.width, height=opts.height, fps=24)
        base = ["--preset", opts.preset]
        timed(command(one, root / "warm.mp4", base))  # converts the weights once
        startup = timed(command(one, root / "one.x4.mp4", base))
        print(f"CPU: {cpu()}; preset {opts.preset}, {opts.width}x{opts.height}, {opts.seconds:g} s at 24 fps")
        print(f"S (one more process start, a 1-frame run): {startup:.1f} s")
        print("| policy | T uninterrupted | killed at K | R rerun | resumed at frame | work lost K+R-T |")
        print("|---|---:|---:|---:|---:|---:|")
        policies = {
            f"--checkpoint {opts.checkpoint:g}": ["--checkpoint", str(opts.checkpoint)],
            "10 s of video, no work bound (before)": ["--checkpoint", "1e9"],
        }
        for label, extra in policies.items():
            args = [*base, *extra, "--force"]
            whole = timed(command(clip, root / "whole.mp4", args))
            out = root / "killed.mp4"
            start = time.perf_counter()
            proc = subprocess.Popen(command(clip, out, args), stderr=subprocess.DEVNULL)
            time.sleep(opts.kill_at * whole)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.perf_counter() - start
            manifest = root / ".vsr" / "killed.mp4.work" / "manifest.json"
            frames = sum(s["frames"] for s in json.loads(manifest.read_text())["segments"]) if manifest.exists() else 0
            rerun = timed(command(clip, out, [*base, *extra]))
            lost = killed + rerun - whole
            print(f"| {label} | {whole:.1f} s | {killed:.1f} s | {rerun:.1f} s | {frames} | {lost:.1f} s |")
            out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
