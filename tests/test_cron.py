"""Cron correctness: nothing overwritten, nothing stale, nothing half-done; one plan per run.

Each test makes what a cron job meets in a media folder (clashing names, a
re-imported model, a slow run killed half-way, a file still being copied, a
long name, a killed run's leftovers, vsr's own outputs without their records)
and checks the result with ffprobe and the decoded pixels.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import (
    TESTS,
    TINY,
    decode_rgb,
    ffmpeg,
    ffprobe,
    run_vsr,
    spawn_vsr,
    video_pts,
    wait_for_segments,
)
from vsr.sample import cartoon_frame, write_sample

BATCH = ["--settle", "0"]  # fixtures are brand new; test_files_still_being_written covers settling
LOSSLESS = ["--set", "encode.crf=0"]  # x264 lossless: equal frames in, equal frames out
PACED = ["--set", "decode.stage=paced", "--set", "decode.delay=0.05"]  # slow enough to kill half-way
CHECKPOINTS = TESTS / "fixtures" / "checkpoints"


def _report(path: Path) -> dict[str, dict]:
    return {Path(f["input"]).name: f for f in json.loads(path.read_text())["files"]}


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _same_frames(a: Path, b: Path) -> None:
    x, y = decode_rgb(a), decode_rgb(b)
    assert len(x) == len(y)
    for i, (p, q) in enumerate(zip(x, y, strict=True)):
        assert np.array_equal(p, q), f"frame {i} differs by up to {np.abs(p.astype(int) - q).max()} levels"
    assert video_pts(a) == video_pts(b)


def test_inputs_never_share_an_output(tmp_path, sample_clip):
    src = tmp_path / "in"
    src.mkdir()
    for suffix in (".avi", ".mkv", ".ts"):
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc=size=32x18:rate=6:duration=0.5", "-pix_fmt", "yuv420p", src / f"clip{suffix}"
        )
    out, report = tmp_path / "out", tmp_path / "r.json"
    args = ["upscale", str(src), "-o", str(out), "--report", str(report), *TINY, *BATCH]
    first = run_vsr(*args)
    assert first.returncode == 0, first.stderr
    entries = _report(report)
    assert {n: e["status"] for n, e in entries.items()} == dict.fromkeys(["clip.avi", "clip.mkv", "clip.ts"], "done")
    assert _visible(out) == ["clip.avi.x4.mkv", "clip.ts.x4.mkv", "clip.x4.mkv"]
    for name in entries:  # each output is its own input's (the tag inside names it)
        tags = ffprobe(Path(entries[name]["output"]), "-show_format")["format"]["tags"]
        assert json.loads(next(v for k, v in tags.items() if k.lower() == "vsr"))["input"] == name
    again = run_vsr(*args)
    assert again.returncode == 0 and {e["status"] for e in _report(report).values()} == {"skipped"}

    # a name that would still collide is refused on both sides, before any work, and nothing is overwritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    shutil.copy(src / "clip.mkv", src / "clip.avi.mkv")
    clash = run_vsr(*args)
    assert clash.returncode == 1, clash.stderr
    entries = _report(report)
    assert entries["clip.avi"]["status"] == entries["clip.avi.mkv"]["status"] == "failed"
    assert f"{src / 'clip.avi'}: its output" in entries["clip.avi"]["error"]
    assert f"would also be that of {src / 'clip.avi.mkv'}" in entries["clip.avi"]["error"]
    assert {entries["clip.mkv"]["status"], entries["clip.ts"]["status"]} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert "Traceback" not in clash.stderr

    # another input aimed at an output vsr made from this one: refused, not overwritten
    other = run_vsr("upscale", str(sample_clip), "-o", str(out / "clip.x4.mkv"), *TINY)
    assert other.returncode == 2 and f"upscale of another input ({src / 'clip.mkv'})" in other.stderr, other.stderr
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_done_means_done_with_these_weights(tmp_path, sample_clip):
    env = {"VSR_CACHE_DIR": str(tmp_path / "cache")}
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_clip, src / "a.mp4")
    out, report = tmp_path / "out", tmp_path / "r.json"
    imported = run_vsr("models", "import", str(CHECKPOINTS / "srvgg_x4_legacy.pth"), "--name", "mine", **env)
    assert imported.returncode == 0, imported.stderr
    args = ["upscale", str(src), "-o", str(out), "--model", "mine", "--report", str(report), *TINY[2:], *BATCH]

    def status() -> str:
        result = run_vsr(*args, **env)
        assert result.returncode == 0, result.stderr
        return _report(report)["a.mp4"]["status"]

    assert status() == "done"
    first = decode_rgb(out / "a.x4.mp4")
    assert status() == "skipped"
    replaced = run_vsr(
        "models", "import", str(CHECKPOINTS / "rrdb_x4_params_ema.pth"), "--name", "mine", "--replace", **env
    )
    assert replaced.returncode == 0, replaced.stderr
    assert status() == "done"  # same name, other weights: not done any more
    assert not np.array_equal(decode_rgb(out / "a.x4.mp4")[5], first[5])
    assert status() == "skipped"

    # a new file behind the same --model path
    model = tmp_path / "model.pth"
    shutil.copy(CHECKPOINTS / "srvgg_x4_legacy.pth", model)
    single = ["upscale", str(sample_clip), "-o", str(tmp_path / "x.mp4"), "--model", str(model), *TINY[2:]]
    assert "wrote" in run_vsr(*single, **env).stderr
    assert "skipped" in run_vsr(*single, **env).stderr
    shutil.copy(CHECKPOINTS / "rrdb_x4_params_ema.pth", model)
    assert "wrote" in run_vsr(*single, **env).stderr


def test_a_resume_never_joins_segments_of_two_networks(tmp_path, media):
    env = {"VSR_CACHE_DIR": str(tmp_path / "cache")}
    clip = write_sample(media / "two-nets.mp4", seconds=3, width=48, height=32, fps=12, audio=False)
    assert run_vsr("models", "import", str(CHECKPOINTS / "srvgg_x4_legacy.pth"), "--name", "m", **env).returncode == 0
    args = [*TINY[2:], *LOSSLESS, "--model", "m", "--segment", "0.5"]
    out = tmp_path / "o.mp4"
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *args, *PACED, **env)
    wait_for_segments(tmp_path / ".vsr" / "o.mp4.work", proc, 2)
    proc.kill()
    proc.wait()
    swap = run_vsr("models", "import", str(CHECKPOINTS / "rrdb_x4_params_ema.pth"), "--name", "m", "--replace", **env)
    assert swap.returncode == 0
    resumed = run_vsr("upscale", str(clip), "-o", str(out), *args, **env)
    assert resumed.returncode == 0, resumed.stderr
    assert "cannot resume earlier work on this file (the input or the settings changed)" in resumed.stderr
    fresh = tmp_path / "fresh.mp4"
    assert run_vsr("upscale", str(clip), "-o", str(fresh), *args, **env).returncode == 0
    _same_frames(out, fresh)


def test_segments_close_by_work_done_and_a_kill_loses_at_most_one(tmp_path, media):
    clip = write_sample(media / "slow.mp4", seconds=4, width=64, height=36, fps=12)  # 48 frames: one 10 s segment
    args = [*TINY, *LOSSLESS, *PACED, "--checkpoint", "0.4"]
    whole = tmp_path / "whole.mp4"
    assert run_vsr("upscale", str(clip), "-o", str(whole), *args).returncode == 0

    out = tmp_path / "resumed.mp4"
    work = tmp_path / ".vsr" / "resumed.mp4.work"
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *args)
    wait_for_segments(work, proc, 2)
    proc.kill()
    proc.wait()
    done = json.loads((work / "manifest.json").read_text())["segments"]
    frames = [s["frames"] for s in done]
    assert len(frames) >= 2 and all(0 < n < 48 for n in frames), frames  # closed by work done, not by video length
    assert all(s["state"] and (work / s["state"]).is_file() for s in done)

    result = run_vsr("upscale", str(clip), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert f"resuming at frame {sum(frames)}" in result.stderr
    assert not work.exists()
    _same_frames(out, whole)  # the frames of an uninterrupted run, at the same times
    audio = ffprobe(out, "-select_streams", "a", "-show_entries", "packet=pts", "-of", "json")["packets"]
    assert audio == ffprobe(whole, "-select_streams", "a", "-show_entries", "packet=pts", "-of", "json")["packets"]


@pytest.fixture(scope="module")
def noisy_still(tmp_path_factory) -> Path:
    """A still cartoon with light per-frame noise (36 frames, lossless FFV1): what smoothing is for."""
    path = tmp_path_factory.mktemp("noisy") / "still.mkv"
    base = cartoon_frame(0, 48, 32, 10).astype(float)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv444p"
        stream.time_base = Fraction(1, 12)
        for t in range(36):
            noise = np.random.default_rng(t).normal(0, 1.0, base.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(base + noise, 0, 255).round().astype(np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv444p")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_smoothing_goes_on_across_segments_and_resumes(tmp_path, noisy_still):
    # region reuse off: on a still picture it would reuse every frame's output, leaving nothing to smooth
    still = [*TINY, *LOSSLESS, "--set", "upscale.reuse=false"]
    args = ["--smooth", *still]
    plain, one, many = tmp_path / "plain.mkv", tmp_path / "one.mkv", tmp_path / "many.mkv"
    assert run_vsr("upscale", str(noisy_still), "-o", str(plain), *still).returncode == 0
    assert run_vsr("upscale", str(noisy_still), "-o", str(one), *args, "--segment", "100").returncode == 0
    assert run_vsr("upscale", str(noisy_still), "-o", str(many), *args, "--segment", "0.25").returncode == 0
    smoothed, unsmoothed = decode_rgb(one), decode_rgb(plain)
    assert any(not np.array_equal(a, b) for a, b in zip(smoothed, unsmoothed, strict=True))  # it smooths
    _same_frames(many, one)  # a segment boundary every 3 frames changes nothing

    # no flicker spike where segments meet: frame-to-frame change there is like anywhere else
    frames = [f.astype(float) for f in decode_rgb(many)]
    change = [float(np.abs(b - a).mean()) for a, b in itertools.pairwise(frames)]
    boundaries = [change[t - 1] for t in range(3, 36, 3)]
    inside = [change[t - 1] for t in range(6, 36) if t % 3]
    assert max(boundaries) <= 1.2 * max(inside), (boundaries, inside)

    # killed half-way, resumed in a new process: the smoother goes on from the saved state
    out = tmp_path / "resumed.mkv"
    proc = spawn_vsr("upscale", str(noisy_still), "-o", str(out), *args, *PACED, "--checkpoint", "0.3")
    wait_for_segments(tmp_path / ".vsr" / "resumed.mkv.work", proc, 1)
    proc.kill()
    proc.wait()
    resumed = run_vsr("upscale", str(noisy_still), "-o", str(out), *args, *PACED, "--checkpoint", "0.3")
    assert resumed.returncode == 0 and "resuming at frame" in resumed.stderr, resumed.stderr
    _same_frames(out, one)


def test_files_still_being_written_are_busy(tmp_path, sample_clip):
    src = tmp_path / "in"
    src.mkdir()
    clip = src / "rec.mp4"
    data = sample_clip.read_bytes()
    clip.write_bytes(data[: len(data) // 3])  # a copy in progress: a third of it so far
    out, report = tmp_path / "out", tmp_path / "r.json"
    args = ["upscale", str(src), "-o", str(out), "--report", str(report), *TINY]
    busy = run_vsr(*args)
    assert busy.returncode == 0, busy.stderr
    entry = _report(report)["rec.mp4"]
    assert entry["status"] == "busy" and "still being written" in entry["error"]
    assert not out.exists() or _visible(out) == []
    clip.write_bytes(data)  # the copy finishes ...
    past = time.time() - 120
    os.utime(clip, (past, past))  # ... and two minutes go by
    done = run_vsr(*args)
    assert done.returncode == 0 and _report(report)["rec.mp4"]["status"] == "done", done.stderr
    assert len(video_pts(out / "rec.x4.mp4")) == 12

    # an input that changes while it is being upscaled is not published either
    growing = tmp_path / "growing.mp4"
    write_sample(growing, seconds=3, width=48, height=32, fps=12, audio=False)
    target = tmp_path / "growing.x4.mp4"
    proc = spawn_vsr("upscale", str(growing), *TINY, *PACED, "--segment", "0.5")
    wait_for_segments(tmp_path / ".vsr" / "growing.x4.mp4.work", proc, 1)
    os.utime(growing)  # touched: the writer is not done with it
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "busy" in err and "changed while it was being upscaled" in err, err
    assert not target.exists()
    assert run_vsr("upscale", str(growing), *TINY).returncode == 0 and target.exists()


def test_long_names_work_and_too_long_ones_are_one_clear_line(tmp_path, sample_clip):
    clip = tmp_path / ("n" * 236 + ".mp4")
    shutil.copy(sample_clip, clip)
    first = run_vsr("upscale", str(clip), *TINY, "--segment", "0.5")
    assert first.returncode == 0, first.stderr
    output = tmp_path / ("n" * 236 + ".x4.mp4")
    assert len(video_pts(output)) == 12
    assert "skipped" in run_vsr("upscale", str(clip), *TINY).stderr  # its record was found again
    longest = tmp_path / ("m" * 250 + ".mp4")
    shutil.copy(sample_clip, longest)
    refused = run_vsr("upscale", str(longest), *TINY)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "would pass 255 bytes" in refused.stderr
    assert "internal error" not in refused.stderr


def test_leftovers_of_killed_runs_are_removed(tmp_path, sample_clip):
    clip = tmp_path / "in.mp4"
    shutil.copy(sample_clip, clip)
    dead = subprocess.Popen(["true"])
    dead.wait()
    partial = tmp_path / f".in.x4.partial-{dead.pid}.mp4"  # a kill -9 during the final join left it, full size
    partial.write_bytes(os.urandom(100_000))
    (tmp_path / ".vsr").mkdir()
    half_record = tmp_path / ".vsr" / f".in.x4.mp4.json.{dead.pid}.tmp"
    half_record.write_text("{")
    living = tmp_path / f".in.x4.partial-{os.getpid()}.mp4"  # its process still runs: not ours to remove
    living.write_bytes(b"x")
    result = run_vsr("upscale", str(clip), *TINY, process=True)  # another process than the one that is "living"
    assert result.returncode == 0, result.stderr
    assert not partial.exists() and not half_record.exists() and living.exists()
    assert f"left by a killed run (pid {dead.pid})" in result.stderr


def test_own_outputs_are_recognised_without_records(tmp_path, sample_clip):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(sample_clip, lib / "a.mp4")
    report = tmp_path / "r.json"
    args = ["upscale", str(lib), "--report", str(report), *TINY, *BATCH]
    assert run_vsr(*args).returncode == 0
    shutil.rmtree(lib / ".vsr")  # the records are gone; the tag inside the output is not
    again = run_vsr(*args)
    assert again.returncode == 0, again.stderr
    assert {n: e["status"] for n, e in _report(report).items()} == {"a.mp4": "skipped"}
    assert _visible(lib) == ["a.mp4", "a.x4.mp4"]
    changed = run_vsr(*args, "--set", "encode.crf=30")  # other settings: vsr redoes its own file
    assert changed.returncode == 0 and _report(report)["a.mp4"]["status"] == "done", changed.stderr
    # a user's file that only looks like an output (no tag) is an input like any other
    shutil.copy(sample_clip, lib / "b.x4.mp4")
    mine = run_vsr(*args)
    assert _report(report)["b.x4.mp4"]["status"] == "done", mine.stderr


def test_one_plan_per_run(tmp_path):
    from vsr.models.store import load_converted, weights_digest
    from vsr.plan import plan_run
    from vsr.plugins import load_registry

    registry = load_registry()
    plan = plan_run(registry, "default", overrides=["encode.crf=20"], model="tiny-srvgg", smooth=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.settings = "x"  # type: ignore[misc]
    assert [s.role for s in plan.stages] == ["decode", "upscale", "smooth", "encode"] and plan.scale == 4
    upscale = plan.stage("upscale")
    assert upscale is not None and upscale.options.model == "tiny-srvgg"  # typed, not a --set string
    assert upscale.prepared.identity["weights_sha256"] == weights_digest(upscale.prepared.resource.spec)
    load_converted(upscale.prepared.resource.spec)
    same = plan_run(registry, "default", overrides=["encode.crf=20"], model="tiny-srvgg", smooth=True)
    assert same.settings == plan.settings
    other = plan_run(registry, "default", overrides=["encode.crf=20"], model="tiny-rrdb", smooth=True)
    assert other.settings != plan.settings
