"""Cron-grade batches: folders, skipping, reports, bad files, overlapping runs, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import (
    TINY,
    decode_rgb,
    ffmpeg,
    ffprobe,
    run_vsr,
    spawn_vsr,
    streams,
    video_pts,
    vsr_command,
    vsr_env,
    wait_for_segments,
)
from vsr.outputs import OutputLock

SEG = ["--segment", "0.25", "--settle", "0"]  # fixtures are brand new: no waiting for them to settle


def _report(path: Path) -> dict[str, dict]:
    data = json.loads(path.read_text())
    return {Path(f["input"]).name: f for f in data["files"]}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vsr: error:")]


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def library(tmp_path_factory, sample_clip, vfr_clip) -> Path:
    """A media folder with good and bad files, as a cron job would meet it."""
    root = tmp_path_factory.mktemp("library")
    (root / "shows" / "s01").mkdir(parents=True)
    (root / "a.mp4").write_bytes(sample_clip.read_bytes())
    (root / "shows" / "s01" / "vfr.mkv").write_bytes(vfr_clip.read_bytes())
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=33x17:rate=8:duration=0.5", str(root / "odd.gif"))
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x36:rate=12:duration=0.5",
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error", str(root / "deep.mkv"),
    )  # fmt: skip
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mkv").write_bytes(os.urandom(5000))
    data = sample_clip.read_bytes()
    (root / "shows" / "cut.mp4").write_bytes(data[: len(data) // 3])
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", str(root / "shows" / "audio.mp4"))
    (root / "notes.txt").write_text("not a video\n")
    (root / "text.mp4").write_text("a text file with a video name\n")
    return root


GOOD = {"a.mp4", "vfr.mkv", "odd.gif", "deep.mkv"}
BAD = {"empty.mp4", "random.mkv", "cut.mp4", "audio.mp4", "text.mp4"}


def test_batch_over_a_folder_then_again(library, tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    missing = str(tmp_path / "nowhere.mp4")
    first = run_vsr("upscale", str(library), missing, "-o", str(out), "--report", str(report), *TINY, *SEG)
    assert first.returncode == 1, first.stderr  # some failed
    assert "Traceback" not in first.stderr
    entries = _report(report)
    assert {n for n, e in entries.items() if e["status"] == "done"} == GOOD
    assert {n for n, e in entries.items() if e["status"] == "failed"} == BAD | {"nowhere.mp4"}
    assert "notes.txt" not in entries  # not a video suffix: not considered
    for name in BAD:
        assert entries[name]["error"] and "\n" not in entries[name]["error"]
    assert "no such file" in entries["nowhere.mp4"]["error"]
    assert "no video stream" in entries["audio.mp4"]["error"]
    # one line per failed file on stderr, none for the good ones but their result line
    assert len(_error_lines(first.stderr)) == len(BAD) + 1
    # the tree is mirrored; only finished outputs and vsr's records are left
    assert _files(out) == {
        "a.x4.mp4", "odd.x4.gif", "deep.x4.mkv", "shows/s01/vfr.x4.mkv",
        ".vsr/a.x4.mp4.json", ".vsr/odd.x4.gif.json", ".vsr/deep.x4.mkv.json", "shows/s01/.vsr/vfr.x4.mkv.json",
    }  # fmt: skip
    assert not (out / "shows" / ".vsr").exists()  # failures leave no state behind
    assert entries["a.mp4"]["frames"] == 12 and entries["a.mp4"]["fps"] > 0
    v = next(s for s in streams(out / "deep.x4.mkv") if s["codec_type"] == "video")
    assert (v["width"], v["height"]) == (256, 144)
    g = next(s for s in streams(out / "odd.x4.gif") if s["codec_type"] == "video")
    assert (g["width"], g["height"]) == (132, 68)
    assert video_pts(out / "shows" / "s01" / "vfr.x4.mkv") == video_pts(library / "shows" / "s01" / "vfr.mkv")

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.x4.*")}
    again = run_vsr("upscale", str(library), "-o", str(out), "--report", str(report), *TINY, *SEG)
    assert again.returncode == 1
    entries = _report(report)
    assert {n for n, e in entries.items() if e["status"] == "skipped"} == GOOD
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.x4.*")} == mtimes  # not touched
    # other settings: not done any more
    changed = run_vsr("upscale", str(library / "a.mp4"), "-o", str(out), *TINY, *SEG, "--set", "encode.crf=30")
    assert changed.returncode == 0 and "wrote" in changed.stderr
    forced = run_vsr("upscale", str(library / "a.mp4"), "-o", str(out), *TINY, *SEG, "--set", "encode.crf=30")
    assert "skipped" in forced.stderr
    forced = run_vsr(
        "upscale", str(library / "a.mp4"), "-o", str(out), *TINY, *SEG, "--set", "encode.crf=30", "--force"
    )
    assert forced.returncode == 0 and "wrote" in forced.stderr


def test_include_exclude_and_globs(library, tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    result = run_vsr(
        "upscale", str(library), "-o", str(out), "--include", "*.mkv", "--exclude", "random.*",
        "--report", str(report), *TINY, *SEG,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(_report(report)) == {"vfr.mkv", "deep.mkv"}
    globbed = run_vsr("upscale", f"{library}/*.gif", "-o", str(out), "--report", str(report), *TINY, *SEG)
    assert globbed.returncode == 0 and set(_report(report)) == {"odd.gif"}
    nothing = run_vsr("upscale", f"{library}/*.nothing", "-o", str(out), *TINY)
    assert nothing.returncode == 1 and "no file matches" in nothing.stderr
    # outputs written beside their inputs are never taken for inputs by a later scan
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "a.mp4").write_bytes((library / "a.mp4").read_bytes())
    assert run_vsr("upscale", str(beside), *TINY, *SEG).returncode == 0
    run_vsr("upscale", str(beside), "--report", str(report), *TINY, *SEG)
    assert set(_report(report)) == {"a.mp4"} and (beside / "a.x4.mp4").exists()


def test_concurrent_runs_share_the_work(tmp_path, sample_clip):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"clip{i}.mp4").write_bytes(sample_clip.read_bytes())
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), *TINY, *SEG]
    procs = [spawn_vsr(*args, "--report", str(tmp_path / f"r{i}.json")) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    reports = [_report(tmp_path / f"r{i}.json") for i in range(2)]
    done = [{n for n, e in r.items() if e["status"] == "done"} for r in reports]
    assert done[0] | done[1] == {f"clip{i}.mp4" for i in range(4)}
    assert not done[0] & done[1]  # each file by exactly one run
    for r in reports:
        assert {e["status"] for e in r.values()} <= {"done", "busy", "skipped"}
    for i in range(4):
        assert len(decode_rgb(out / f"clip{i}.x4.mp4")) == 12


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    output = tmp_path / "x.mp4"
    holder = subprocess.Popen(
        [
            *vsr_command()[:1],
            "-c",
            f"from pathlib import Path; from vsr.outputs import OutputLock; import time\n"
            f"assert OutputLock(Path({str(output)!r})).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    lock = OutputLock(output)
    assert not lock.acquire()  # held by a live process
    holder.kill()
    holder.wait()
    assert lock.acquire()  # the kernel dropped the dead holder's lock
    lock.release()
    assert not (tmp_path / ".vsr").exists()


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, media):
    from vsr.sample import write_sample

    clip = write_sample(media / "resume.mp4", seconds=4, width=64, height=36, fps=12)
    args = [*TINY, "--segment", "0.5", "--smooth"]
    whole = tmp_path / "whole.mp4"
    assert run_vsr("upscale", str(clip), "-o", str(whole), *args).returncode == 0

    out = tmp_path / "resumed.mp4"
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *args)
    work = tmp_path / ".vsr" / "resumed.mp4.work"
    wait_for_segments(work, proc, 2)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    assert not out.exists()
    assert not any(p.name.startswith(".resumed") for p in tmp_path.iterdir())  # no partial output yet
    done_before = json.loads((work / "manifest.json").read_text())["segments"]
    assert done_before

    result = run_vsr("upscale", str(clip), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    resumed_at = sum(s["frames"] for s in done_before)
    assert f"resuming at frame {resumed_at}" in result.stderr and resumed_at > 0
    assert not work.exists()
    # the same file as an uninterrupted run: frames, timestamps, streams, pixels
    assert video_pts(out) == video_pts(whole)
    assert [(s["codec_type"], s.get("duration")) for s in streams(out)] == [
        (s["codec_type"], s.get("duration")) for s in streams(whole)
    ]
    a, b = decode_rgb(out), decode_rgb(whole)
    assert len(a) == len(b) == 48
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    audio = ffprobe(out, "-select_streams", "a", "-show_entries", "packet=pts", "-of", "json")["packets"]
    assert audio == ffprobe(whole, "-select_streams", "a", "-show_entries", "packet=pts", "-of", "json")["packets"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_keeps_finished_segments_reports_and_leaves_no_partial_output(tmp_path, media, sig, code):
    """SIGTERM, and SIGHUP (a closed terminal, a dropped ssh connection): one line, a report, 128 + signal."""
    from vsr.sample import write_sample

    clip = write_sample(media / f"term{code}.mp4", seconds=4, width=64, height=36, fps=12, audio=False)
    out = tmp_path / "term.x4.mp4"
    report = tmp_path.parent / f"{tmp_path.name}-report.json"
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *TINY, "--segment", "0.5", "--report", str(report))
    work = tmp_path / ".vsr" / "term.x4.mp4.work"
    wait_for_segments(work, proc, 1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err and err.count("error:") == 1
    assert {p.name for p in tmp_path.iterdir()} == {".vsr"}
    assert not list(work.glob(".seg-*"))  # the unfinished segment was discarded
    written = json.loads(report.read_text())
    assert written["interrupted"] and written["signal"] == sig.name and written["exit_code"] == code
    (entry,) = written["files"]
    assert entry["status"] == "interrupted" and entry["resumable"] and entry["frames"] >= 6  # the kept segments
    assert run_vsr("upscale", str(clip), "-o", str(out), *TINY, "--segment", "0.5").returncode == 0
    assert len(video_pts(out)) == 48


def test_full_disk_is_a_clear_error_and_leaves_the_input(tmp_path, sample_clip):
    clip = tmp_path / "in.mp4"
    clip.write_bytes(sample_clip.read_bytes())
    before = clip.read_bytes()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # writes beyond 20 kB fail (EFBIG)

    result = subprocess.run(
        vsr_command("upscale", str(clip), *TINY, *SEG),
        capture_output=True,
        text=True,
        env=vsr_env(),
        preexec_fn=small_files,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "File too large" in result.stderr and result.stderr.count("error:") == 1
    assert "Traceback" not in result.stderr
    assert clip.read_bytes() == before
    assert not (tmp_path / "in.x4.mp4").exists()
    assert not any(p.name.startswith(".in.x4") for p in tmp_path.iterdir())
    again = run_vsr("upscale", str(clip), *TINY, *SEG)  # space freed: finishes, from the kept segments if any
    assert again.returncode == 0, again.stderr
    assert len(video_pts(tmp_path / "in.x4.mp4")) == 12


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--preset", "nope"], "unknown preset"),
        (["--set", "upscale.tiles=3"], "tiles"),
        (["-o", "FILE"], "must be a folder"),
    ],
)
def test_batch_usage_errors_touch_nothing(library, tmp_path, extra, needle):
    (tmp_path / "file").write_text("x")
    extra = [str(tmp_path / "file") if a == "FILE" else a for a in extra]
    out = ["-o", str(tmp_path / "out")] if "-o" not in extra else []
    result = run_vsr("upscale", str(library), *out, *TINY, *extra)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("error:") == 1 and needle in result.stderr
    assert not (tmp_path / "out").exists()


def test_resume_with_another_segment_length(tmp_path, media):
    """Segments are named by their first frame, so changing --segment between runs loses nothing."""
    from vsr.sample import write_sample

    clip = write_sample(media / "reseg.mp4", seconds=4, width=64, height=36, fps=12, audio=False)
    out = tmp_path / "o.mp4"
    proc = spawn_vsr("upscale", str(clip), "-o", str(out), *TINY, "--segment", "0.5")
    wait_for_segments(tmp_path / ".vsr" / "o.mp4.work", proc, 2)
    proc.kill()
    proc.wait()
    result = run_vsr("upscale", str(clip), "-o", str(out), *TINY, "--segment", "1.0")
    assert result.returncode == 0 and "resuming at frame" in result.stderr, result.stderr
    assert len(video_pts(out)) == 48 and video_pts(out) == video_pts(clip)
