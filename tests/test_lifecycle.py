"""The edges of a run's life: destinations checked before any work, full disks, names that are not UTF-8,
interrupted scale-out reports, vsr's own warnings while native output is silenced, clashing inputs."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import TINY, ffmpeg, ffprobe, run_vsr, spawn_vsr, streams, video_pts, vsr_env, vsr_main
from vsr.sample import write_sample

NOW = ["--settle", "0"]


def _codecs(path: Path) -> list[str]:
    return [s["codec_name"] for s in streams(path)]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def test_a_webm_input_becomes_vp9_with_its_opus_kept(tmp_path, sample_clip):
    clip = tmp_path / "clip.webm"
    ffmpeg("-i", sample_clip, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus", clip)
    result = vsr_main("upscale", clip, *TINY)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "clip.x4.webm"
    assert _codecs(out) == ["vp9", "opus"]
    assert "webm holds no libx264: encoding libvpx-vp9" in result.stderr
    assert video_pts(out) == video_pts(clip)


def test_aac_that_webm_cannot_hold_is_reencoded_as_opus(tmp_path, sample_clip):
    out = tmp_path / "clip.webm"
    result = vsr_main("upscale", sample_clip, "-o", out, *TINY, "--segment", "0.5")  # joined from segments
    assert result.returncode == 0, result.stderr
    assert _codecs(out) == ["vp9", "opus"]
    assert "re-encoded as libopus" in result.stderr
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", out, "-map", "0:a", "-f", "s16le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout  # fmt: skip
    assert abs(len(pcm) / 2 / 48000 - 1.0) < 0.03  # the whole second of sound, at Opus's 48 kHz
    assert np.abs(np.frombuffer(pcm, np.int16)).max() > 1000  # sound, not silence


@pytest.mark.parametrize(
    ("output", "extra", "needle"),
    [
        ("out.xyz", [], "no output format has the suffix '.xyz'"),
        ("out", [], "no output format has the suffix '(none)'"),
        ("out.webm", ["--set", "encode.codec=libx264"], "the webm container cannot hold libx264"),
        ("out.avi", ["--set", "encode.codec=libx265"], "the avi container cannot hold libx265"),
        ("out.ogv", [], "the ogv container cannot hold libx264"),
        ("out.mov", ["--set", "encode.codec=libvpx-vp9", "--set", "encode.speed=5"], "the mov container cannot hold"),
        ("out.ts", ["--set", "encode.codec=libvpx-vp9", "--set", "encode.speed=5"], "the mpegts container cannot"),
    ],
)
def test_a_destination_the_join_cannot_write_is_refused_before_any_work(tmp_path, sample_clip, output, extra, needle):
    result = vsr_main("upscale", sample_clip, "-o", tmp_path / output, *TINY, *extra)
    assert result.returncode == 2, result.stderr
    assert len(_error_lines(result.stderr)) == 1 and needle in result.stderr, result.stderr
    assert "upscale:" not in result.stderr  # refused before the network was built
    assert list(tmp_path.iterdir()) == []


def test_an_output_name_ending_in_a_slash_is_a_folder(tmp_path, sample_clip):
    result = vsr_main("upscale", sample_clip, "-o", f"{tmp_path / 'new' / 'dir'}/", *TINY)
    assert result.returncode == 0, result.stderr
    assert len(video_pts(tmp_path / "new" / "dir" / "sample.x4.mp4")) == 12


def test_a_symlink_loop_in_a_folder_is_one_failed_entry_and_the_rest_runs(tmp_path, sample_clip):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_clip, src / "good.mp4")
    (src / "loop1.mp4").symlink_to("loop2.mp4")
    (src / "loop2.mp4").symlink_to("loop1.mp4")
    report = tmp_path / "r.json"
    result = vsr_main("upscale", src, "-o", tmp_path / "out", *TINY, *NOW, "--report", report)
    assert result.returncode == 1, result.stderr
    files = {Path(e["input"]).name: e for e in json.loads(report.read_text())["files"]}
    assert files["good.mp4"]["status"] == "done"
    assert files["loop1.mp4"]["status"] == "failed" and "loops back on itself" in files["loop1.mp4"]["error"]
    named = vsr_main("upscale", src / "loop1.mp4", *TINY)
    assert named.returncode == 1 and "loops back on itself" in named.stderr, named.stderr


def test_a_report_that_cannot_be_written_is_refused_before_any_work(tmp_path, sample_clip):
    result = vsr_main("upscale", sample_clip, "-o", tmp_path / "o.mp4", *TINY, "--report", tmp_path / "no" / "r.json")
    assert result.returncode == 2 and "--report" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_mpeg_ts_keeps_its_aac(tmp_path, sample_clip):
    out = tmp_path / "clip.ts"
    assert vsr_main("upscale", sample_clip, "-o", out, *TINY).returncode == 0
    assert _codecs(out) == ["h264", "aac"]


def test_two_inputs_of_one_name_are_both_named_whole(tmp_path, sample_clip):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(sample_clip, tmp_path / folder / "clip.mp4")
    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    result = vsr_main("upscale", a, b, "-o", tmp_path / "out", *TINY, *NOW)
    assert result.returncode == 1
    lines = _error_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert f"{a}: its output" in lines[0] and f"also be that of {b}" in lines[0]
    assert f"{b}: its output" in lines[1] and f"also be that of {a}" in lines[1]


def _noisy_clip(path: Path, seconds: float = 3.0, fps: int = 12) -> Path:
    """160x120 noise: what lossless encoding cannot shrink, so a few seconds fill a small disk."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 14 MB tmpfs, mounted by the test (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_at_the_join_keeps_every_finished_segment(tmp_path, small_disk):
    clip = _noisy_clip(tmp_path / "noisy.mp4", seconds=2.0)
    out = small_disk / "noisy.x4.mp4"
    args = ["upscale", clip, "-o", out, *TINY, "--set", "encode.crf=0", "--segment", "1", *NOW]
    result = vsr_main(*args)
    assert result.returncode == 1, result.stderr
    (line,) = _error_lines(result.stderr)
    assert "No space left on device" in line and "finished frames are kept: run again to resume" in line, line
    work = small_disk / ".vsr" / "noisy.x4.mp4.work"
    manifest = json.loads((work / "manifest.json").read_text())
    assert sum(s["frames"] for s in manifest["segments"]) == 24  # every unit finished: the join failed
    assert not out.exists() and not list(small_disk.glob(".noisy*"))
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = vsr_main(*args)
    assert again.returncode == 0, again.stderr
    assert "resuming at frame 24" in again.stderr
    assert video_pts(out) == video_pts(clip)


def test_a_segment_whose_record_cannot_be_saved_is_not_left_unlisted(tmp_path, monkeypatch):
    from vsr import segments
    from vsr.errors import WriteError

    work = segments.WorkDir(tmp_path / "o.mp4", {"input": 1}, __import__("logging").getLogger("t"))
    work.open()
    piece = work.dir / "seg-000000000.mp4"
    piece.write_bytes(b"x" * 1000)
    segment = segments.Segment(0, piece, 0, 12, 11, segments.SegmentTiming(0, Fraction(1, 12)))

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments, "write_atomic", full)
    with pytest.raises(WriteError, match="No space left on device"):
        work.add(segment, {})
    assert not piece.exists() and work.entries == []
    assert {p.name for p in work.dir.iterdir()} == {"manifest.json"}


def test_names_that_are_not_utf8_are_walked_written_and_reported(tmp_path, sample_clip):
    root = os.fsencode(tmp_path)
    folder = root + b"/in"
    os.mkdir(folder)
    shutil.copy(sample_clip, folder + b"/\xe9t\xe9.mp4")
    shutil.copy(sample_clip, folder + b"/plain.mp4")
    report = tmp_path / "report.json"
    result = vsr_main("upscale", os.fsdecode(folder), "-o", tmp_path / "out", *TINY, *NOW, "--report", report)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(root + b"/out")) == [b".vsr", b"plain.x4.mp4", b"\xe9t\xe9.x4.mp4"]
    assert len(video_pts(Path(os.fsdecode(root + b"/out/\xe9t\xe9.x4.mp4")))) == 12
    entries = {Path(e["input"]).name: e for e in json.loads(report.read_text(encoding="utf-8"))["files"]}
    assert entries["\\xe9t\\xe9.mp4"]["status"] == "done"
    assert entries["\\xe9t\\xe9.mp4"]["output"].endswith("out/\\xe9t\\xe9.x4.mp4")
    named = vsr_main("upscale", os.fsdecode(folder + b"/\xe9t\xe9.mp4"), *TINY)  # named directly, too
    assert named.returncode == 0, named.stderr
    assert b"\xe9t\xe9.x4.mp4" in os.listdir(folder)
    again = vsr_main("upscale", os.fsdecode(folder), "-o", tmp_path / "out", *TINY, *NOW)
    assert again.returncode == 0 and "2 skipped" in again.stderr, again.stderr


def test_an_interrupted_scale_out_reports_every_input_and_the_frames_it_keeps(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        write_sample(src / f"{name}.mp4", seconds=2.0, width=32, height=32, fps=12, audio=False)
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    paced = ["--set", "decode.stage=paced", "--set", "decode.delay=0.15"]
    args = ["upscale", src, "-o", out, *TINY, *paced, "--segment", "0.5", "--devices", "cpu:1", *NOW]
    proc = spawn_vsr(*map(str, args), "--report", str(report))
    manifest = out / ".vsr" / "a.x4.mp4.work" / "manifest.json"
    import time

    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if manifest.exists() and json.loads(manifest.read_text())["segments"]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    files = {Path(e["input"]).name: e for e in json.loads(report.read_text())["files"]}
    assert set(files) == {"a.mp4", "b.mp4", "c.mp4"}
    assert files["a.mp4"]["status"] == "interrupted" and files["a.mp4"]["resumable"]
    kept = sum(s["frames"] for s in json.loads(manifest.read_text())["segments"])
    assert files["a.mp4"]["frames"] == kept > 0
    assert files["c.mp4"]["status"] == "pending"
    assert not list(out.glob("**/.seg-*")) and not list(out.glob("**/*.partial*"))


def test_vsr_lines_reach_the_terminal_while_native_output_is_silenced():
    code = (
        "import logging, os\n"
        "from vsr.cli import main\n"
        "from vsr.backend import quiet_native_stderr\n"
        "main._setup_logging()\n"
        "with quiet_native_stderr():\n"
        "    os.write(2, b'native chatter\\n')\n"
        "    logging.getLogger('vsr').warning('the cached model is damaged: converting again')\n"
    )
    env = {k: v for k, v in vsr_env().items() if k != "VSR_DEBUG"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "vsr: warning: the cached model is damaged: converting again\n"


def test_a_damaged_openvino_cache_is_said_without_debug(tmp_path, sample_clip):
    """Two real runs: the second reads the converted model from the cache, damaged meanwhile."""
    pytest.importorskip("openvino")
    cache = tmp_path / "cache"
    args = ["upscale", str(sample_clip), "-o", str(tmp_path / "o.mp4"), *TINY, "--set", "upscale.engine=openvino"]
    assert run_vsr(*args, "--force", process=True, VSR_CACHE_DIR=str(cache)).returncode == 0
    irs = list((cache / "models" / "openvino").glob("*.bin"))
    assert irs
    for ir in irs:
        ir.write_bytes(b"damaged")
    again = run_vsr(*args, "--force", process=True, VSR_CACHE_DIR=str(cache))
    assert again.returncode == 0, again.stderr
    assert "is damaged: converting again" in again.stderr


def test_metrics_pair_frames_by_time_and_refuse_what_is_not_an_upscale(tmp_path, sample_clip):
    doubled = tmp_path / "field-rate.mp4"  # x4, at twice the frame rate: what a field-rate deinterlace gives
    ffmpeg("-i", sample_clip, "-vf", "scale=iw*4:ih*4:flags=bicubic,fps=24", "-an", "-c:v", "libx264", doubled)
    result = vsr_main("metrics", sample_clip, doubled, "--json")
    assert result.returncode == 0, result.stderr
    other = tmp_path / "other.mp4"
    write_sample(other, seconds=0.5, width=64 * 4, height=36 * 4, fps=12)
    wrong_size = tmp_path / "half.mp4"
    ffmpeg("-i", sample_clip, "-vf", "scale=iw*3/2:ih*3/2", "-an", "-c:v", "libx264", wrong_size)
    for made, needle in ((other, "more than a frame apart"), (wrong_size, "not a whole-number upscale")):
        for command in ("metrics", "compare"):
            refused = vsr_main(
                command, sample_clip, made, *(["-o", tmp_path / "c.png"] if command == "compare" else [])
            )
            assert refused.returncode == 2 and needle in refused.stderr, refused.stderr
            assert len(_error_lines(refused.stderr)) == 1
    assert vsr_main("metrics", sample_clip, doubled, "--scale", "2").returncode == 2
    assert vsr_main("metrics", sample_clip, sample_clip).returncode == 2  # the input beside itself


def test_metrics_counts_every_output_frame_of_a_field_rate_output(tmp_path, sample_clip, capsys):
    from vsr.cli.metrics import metrics

    doubled = tmp_path / "field-rate.mp4"
    ffmpeg("-i", sample_clip, "-vf", "scale=iw*4:ih*4:flags=bicubic,fps=24", "-an", "-c:v", "libx264", doubled)
    metrics(sample_clip, doubled, as_json=True)
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == len(video_pts(doubled)) == 24  # by order, only the first 12 were paired


def test_nothing_is_written_to_home_and_openvino_telemetry_is_off(tmp_path, sample_clip):
    """A real process with a fresh HOME and cache, outside CI (OpenVINO's telemetry stays quiet in CI anyway)."""
    pytest.importorskip("openvino")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in vsr_env().items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "KERAS_HOME")}
    env |= {"HOME": str(home), "VSR_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("XDG_CACHE_HOME", None)
    args = ["upscale", str(sample_clip), "-o", str(tmp_path / "o.mp4"), *TINY, "--set", "upscale.engine=openvino"]
    result = subprocess.run([sys.executable, "-m", "vsr.cli.main", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cache" / "models" / "openvino").glob("*.xml"))  # the converter ran
    assert list(home.iterdir()) == []  # no ~/intel client id, no ~/.keras


def _top_level_boxes(path: Path) -> list[str]:
    """The MP4/QuickTime file's top-level boxes, in file order (what a player reads first)."""
    names, data = [], path.read_bytes()
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        names.append(kind)
        if size < 8:
            break
        at += size
    return names


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_mp4_and_mov_outputs_are_web_ready(tmp_path, sample_clip, suffix):
    """The index comes before the data, whether the output was joined from segments or written in one go."""
    for segment in ("0.25", "100"):
        out = tmp_path / f"o{segment}{suffix}"
        result = vsr_main("upscale", sample_clip, "-o", out, *TINY, "--segment", segment)
        assert result.returncode == 0, result.stderr
        boxes = _top_level_boxes(out)
        assert "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat"), boxes
        tags = {k.lower() for k in ffprobe(out, "-show_format")["format"].get("tags", {})}
        assert "vsr" in tags  # vsr's own tag is still written
        assert len(video_pts(out)) == 12


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_phone_photo_is_upscaled_as_it_is_shown_with_its_profile_and_exif(tmp_path, suffix):
    from PIL import Image, ImageCms, ImageOps

    photo = np.asarray(Image.open(Path(__file__).parent / "data" / "astronaut_192.png").convert("RGB"))[:96, :144]
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show"
    exif[0x010F] = "vsr-test-camera"
    source = tmp_path / "phone.jpg"
    Image.fromarray(photo).save(source, quality=95, exif=exif.tobytes(), icc_profile=icc)
    out = tmp_path / f"phone.x4{suffix}"
    result = vsr_main("upscale", source, "-o", out, *TINY)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as written:
        assert written.size == (96 * 4, 144 * 4)  # as shown: upright, not sideways
        assert written.getexif().get(0x0112, 1) == 1 and ImageOps.exif_transpose(written).size == written.size
        assert written.getexif().get(0x010F) == "vsr-test-camera"
        assert written.info.get("icc_profile") == icc
        pixels = np.asarray(written.convert("RGB")).astype(np.float32)
    small = pixels.reshape(144, 4, 96, 4, 3).mean(axis=(1, 3))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(source))).astype(np.float32)
    wrong_way = np.rot90(shown, 2)  # the other way round has the same size: the picture must match the right one
    assert np.abs(small - shown).mean() < 0.5 * np.abs(small - wrong_way).mean()
