"""Several workers: local device processes (--devices) and a Ray cluster (--ray) give a single pass's output."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, decode_rgb, run_vsr, spawn_vsr, vsr_env
from vsr.running.units import cut_units
from vsr.sample import write_sample
from vsr.segments import SegmentPolicy

#: --checkpoint high: a single pass then cuts segments by video time only, where units are cut.
CUTS = ["--segment", "1", "--checkpoint", "1000", "--settle", "0"]
PACED = ["--set", "decode.stage=paced", "--set", "decode.delay=0.1"]


def _report(path: Path) -> dict[str, dict]:
    return {Path(f["input"]).name: f for f in json.loads(path.read_text())["files"]}


def _frames(path: Path) -> list[str]:
    """ffmpeg's checksum and timestamps of every decoded frame of every stream: pictures and times compared."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5", "-"], capture_output=True)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.decode().splitlines() if not line.startswith("#")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short clips and one long enough for three units, with sound."""
    src = tmp_path_factory.mktemp("scale") / "in"
    src.mkdir()
    write_sample(src / "long.mp4", seconds=3.0, width=64, height=36, fps=12)
    write_sample(src / "a.mp4", seconds=1.0, width=48, height=32, fps=12)
    write_sample(src / "b.mp4", seconds=0.5, width=32, height=32, fps=10)
    return src


@pytest.fixture(scope="module")
def reference(folder: Path) -> Path:
    """The folder upscaled by one process."""
    out = folder.parent / "single"
    done = run_vsr("upscale", str(folder), "-o", str(out), *TINY, *CUTS)
    assert done.returncode == 0, done.stderr
    return out


def _same_as_reference(out: Path, reference: Path, same_settings: bool = True) -> None:
    for name in ("long.x4.mp4", "a.x4.mp4", "b.x4.mp4"):
        assert _frames(out / name) == _frames(reference / name), name
        if same_settings:  # x264 is deterministic; else the settings hash in vsr's tag differs
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(out.glob("**/*.partial*")) and not list(out.glob(".vsr/*.work"))


def test_units_are_cut_where_a_single_pass_closes_segments() -> None:
    tb = Fraction(1, 90000)
    gaps = [3000, 3000, 6000, 1500, 4500, 3000, 9000, 3000, 3000, 1500, 3000]
    times = list(np.cumsum([1000, *gaps]))  # variable frame rate, not starting at 0
    policy = SegmentPolicy(checkpoint=1e9, max_seconds=0.1)
    units = cut_units(times, tb, policy, prime=2)
    starts, first = [0], 0
    for index in range(1, len(times)):  # the single pass's rule, frame by frame
        if float((times[index] - times[first]) * tb) >= 0.1 - 1e-9:
            starts.append(index)
            first = index
    assert [u.first_index for u in units] == starts
    assert sum(u.frames for u in units) == len(times)
    for unit, nxt in itertools.pairwise(units):
        assert unit.until_pts == times[nxt.first_index]
    assert units[-1].until_pts is None
    assert [u.prime_index for u in units] == [max(0, s - 2) for s in starts]
    assert all(u.prime_after_pts == (times[u.prime_index - 1] if u.prime_index else None) for u in units)


def test_local_workers_match_a_single_process(tmp_path: Path, folder: Path, reference: Path) -> None:
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    args = ["upscale", str(folder), "-o", str(out), *TINY, *CUTS, "--devices", "cpu:2", "--report", str(report)]
    run = run_vsr("-v", *args)
    assert run.returncode == 0, run.stderr
    _same_as_reference(out, reference)
    entries = _report(report)
    assert {n: e["status"] for n, e in entries.items()} == {"long.mp4": "done", "a.mp4": "done", "b.mp4": "done"}
    assert entries["long.mp4"]["frames"] == 36
    units = [line for line in run.stderr.splitlines() if "long.mp4, unit" in line]
    assert sorted(line.split("unit ")[1].split(":")[0] for line in units) == ["1/3", "2/3", "3/3"]  # each once
    assert {line.split(" on ")[1].split(",")[0] for line in units} <= {"cpu0", "cpu1"}
    again = run_vsr(*args)
    assert again.returncode == 0, again.stderr
    assert {e["status"] for e in _report(report).values()} == {"skipped"}


@pytest.mark.parametrize(
    ("option", "message", "code"),
    [
        (["--devices", "cpu:0"], "give cpu:N with N from 1 to 256", 2),
        (["--devices", "7"], "no GPU 7 here", 2),
        (["--devices", "fast"], "give all, cpu, cpu:N, or GPU numbers", 2),
        (["--ray", "auto", "--devices", "cpu:2"], "exclude each other", 2),
        (["--ray", "127.0.0.1:1"], "no Ray cluster answers there", 1),
    ],
)
def test_bad_worker_options_are_one_line(tmp_path: Path, folder: Path, option: list[str], message: str, code: int):
    if option[0] == "--ray" and len(option) == 2 and importlib.util.find_spec("ray") is None:
        message, code = "needs Ray", 2
    run = run_vsr("upscale", str(folder / "b.mp4"), "-o", str(tmp_path / "o.mp4"), *TINY, *option)
    assert run.returncode == code
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not list(tmp_path.iterdir())


def test_a_lost_local_worker_fails_its_files_and_the_next_run_resumes(tmp_path: Path, folder: Path, reference: Path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy2(folder / "long.mp4", src / "long.mp4")
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), *TINY, *CUTS, "--devices", "cpu:2"]
    proc = spawn_vsr(*args, *PACED)
    work = out / ".vsr" / "long.x4.mp4.work"
    victim = _wait_for_worker(proc, "multiprocessing.spawn")
    deadline = time.time() + 120
    while not list(work.glob("seg-*.mp4")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "worker process died" in err and "Traceback" not in err
    assert not (out / "long.x4.mp4").exists()
    resumed = run_vsr(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert _frames(out / "long.x4.mp4") == _frames(reference / "long.x4.mp4")


def _wait_for_worker(proc: subprocess.Popen, pattern: str) -> int:
    """The pid of a process whose command line matches ``pattern`` (a worker of ``proc``), once one appears."""
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        pids = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if pids:
            return int(pids[0])
        time.sleep(0.05)
    raise AssertionError(f"no process {pattern!r} appeared")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _boundary_errors(path: Path, reference: list[np.ndarray], firsts: list[int]) -> list[float]:
    """Mean absolute difference (8-bit levels) from ``reference`` of each unit's first frame."""
    frames = decode_rgb(path)
    assert len(frames) == len(reference)
    return [float(np.abs(frames[i].astype(int) - reference[i].astype(int)).mean()) for i in firsts]


def test_priming_brings_unit_boundaries_close_to_a_single_pass(tmp_path: Path, folder: Path) -> None:
    """With smoothing, a unit starts without its predecessor's history: primed, its first frames nearly match."""
    lossless = [*TINY, *CUTS, "--smooth", "--set", "encode.crf=0"]  # differences are then the smoother's alone
    single = tmp_path / "single.mp4"
    assert run_vsr("upscale", str(folder / "long.mp4"), "-o", str(single), *lossless).returncode == 0
    reference = decode_rgb(single)
    errors = {}
    for prime in (0, 8):
        out = tmp_path / f"prime{prime}.mp4"
        run = run_vsr(
            "upscale", str(folder / "long.mp4"), "-o", str(out), *lossless, "--devices", "cpu:2",
            "--prime-frames", str(prime),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        errors[prime] = _boundary_errors(out, reference, [0, 12, 24])
    print(f"units' first frames, mean abs error vs one pass: unprimed {errors[0]}, primed with 8 {errors[8]}")
    assert errors[0][0] == errors[8][0] == 0.0  # the first unit has no predecessor
    for unprimed, primed in zip(errors[0][1:], errors[8][1:], strict=True):
        assert unprimed > 0.05  # the smoother's missing history shows
        assert primed < 0.75 * unprimed and primed < 0.5


# === Ray ===

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed (pip install 'vsr[ray]')"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Ray head on 127.0.0.1 only, two CPUs, able to load the test plugin."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tmp_path_factory.mktemp("ray")
    env = vsr_env(RAY_USAGE_STATS_ENABLED="0")
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    start = [*ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    start += ["--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = subprocess.run(start, capture_output=True, text=True, env=env, timeout=180)
    assert started.returncode == 0, started.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)


@needs_ray
def test_ray_matches_a_single_process(tmp_path: Path, folder: Path, reference: Path, cluster: str) -> None:
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    run = run_vsr("upscale", str(folder), "-o", str(out), *TINY, *CUTS, "--ray", cluster, "--report", str(report))
    assert run.returncode == 0, run.stderr
    _same_as_reference(out, reference)
    assert {e["status"] for e in _report(report).values()} == {"done"}


@needs_ray
def test_ray_survives_a_killed_worker_and_a_second_run_shares_the_work(
    tmp_path: Path, folder: Path, reference: Path, cluster: str
) -> None:
    out = tmp_path / "out"
    args = ["upscale", str(folder), "-o", str(out), *TINY, *CUTS, *PACED, "--ray", cluster]
    first = spawn_vsr(*args, "--report", str(tmp_path / "r1.json"))
    os.kill(_wait_for_worker(first, "ray::_ray_unit"), signal.SIGKILL)  # a unit in hand: Ray runs it again
    second = run_vsr(*args, "--report", str(tmp_path / "r2.json"))
    assert second.returncode == 0, second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    reports = [_report(tmp_path / f"r{i}.json") for i in (1, 2)]
    done = [{n for n, e in r.items() if e["status"] == "done"} for r in reports]
    assert done[0] | done[1] == {"long.mp4", "a.mp4", "b.mp4"} and not done[0] & done[1]
    assert "busy" in {e["status"] for e in reports[1].values()}
    for r in reports:
        assert {e["status"] for e in r.values()} <= {"done", "busy", "skipped"}
    _same_as_reference(out, reference, same_settings=False)
