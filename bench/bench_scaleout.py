"""What several workers cost and give: a plain run against ``--devices cpu:N`` and ``--ray`` on the same clip.

On the sample clip (made longer: ``--seconds``) with a preset's model (the
compact ``default`` one unless ``--preset``), each a fresh ``vsr upscale``
process, model already converted, best of ``--repeat``:

- plain: one process, segments of ``--segment`` s;
- devices: ``--devices cpu:N`` (N local worker processes sharing the cores);
- ray: ``--ray`` to a local cluster this script starts (``--num-cpus`` N) on 127.0.0.1.

Printed: wall seconds, units, and the overhead per unit against the plain run,
``(T - T_plain) / units``, which on a machine with no more devices than the
plain run uses is the whole price of cutting, shipping and joining (worker
start, model build per worker, priming, seeks). Also a one-unit run
(``--segment`` larger than the clip), whose overhead is the engine's fixed cost.

``python bench/bench_scaleout.py [--seconds 8] [--segment 1] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_resume import cpu, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--segment", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from vsr.sample import write_sample

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clip = write_sample(tmp / "sample.mp4", seconds=args.seconds)
        units = max(1, round(args.seconds / args.segment))
        base = [sys.executable, "-m", "vsr.cli.main", "upscale", str(clip), "--preset", args.preset, "--force"]
        base += ["--checkpoint", "100000"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ray = [sys.executable, "-m", "ray.scripts.scripts"]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        head = ["start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={args.workers}"]
        subprocess.run(
            [*ray, *head, "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
            check=True,
            capture_output=True,
            env=env,
        )
        try:
            timed([*base, "-o", str(tmp / "warm.mp4"), "--segment", str(args.segment)])  # converts the weights once
            runs = {
                "plain": [],
                f"devices cpu:{args.workers}": ["--devices", f"cpu:{args.workers}"],
                "ray": ["--ray", f"127.0.0.1:{port}"],
            }
            clip_text = f"clip {args.seconds:g} s 192x108 @ 24 fps"
            print(f"CPU: {cpu()}; {os.cpu_count()} cores; {clip_text}, preset {args.preset}")
            print(f"{'run':<16} {'units':>5} {'wall s':>8} {'overhead/unit s':>16}   (best of {args.repeat})")
            for segment, count in ((args.segment, units), (args.seconds * 10, 1)):
                plain = 0.0
                for name, extra in runs.items():
                    out = tmp / f"{name.split()[0]}.mp4"
                    cmd = [*base, "-o", str(out), "--segment", str(segment), *extra]
                    best = min(timed(cmd) for _ in range(args.repeat))
                    plain = best if name == "plain" else plain
                    overhead = "" if name == "plain" else f"{(best - plain) / count:16.2f}"
                    print(f"{name:<16} {count:>5} {best:8.2f} {overhead:>16}")
        finally:
            subprocess.run([*ray, "stop", "--force"], capture_output=True, env=env, check=False)


if __name__ == "__main__":
    main()
