"""Bad input and user mistakes: one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, ffmpeg, run_vsr


def _make_cases(media: Path, sample_clip: Path) -> dict[str, Path]:
    root = media / "bad"
    root.mkdir(exist_ok=True)
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(os.urandom(4096))
    (root / "notes.txt").write_text("not a video\n")
    data = sample_clip.read_bytes()
    (root / "cut_header.mp4").write_bytes(data[: len(data) // 3])  # moov at the end: unreadable
    fast = root / "faststart.mp4"
    ffmpeg("-i", str(sample_clip), "-c", "copy", "-movflags", "+faststart", str(fast))
    fs = fast.read_bytes()
    (root / "cut_tail.mp4").write_bytes(fs[: int(len(fs) * 0.7)])  # index intact, frames missing
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", str(root / "audio.m4a"))
    return {p.stem: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def cases(media, sample_clip):
    return _make_cases(media, sample_clip)


def _assert_one_line(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("vsr: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def _no_outputs(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before, "an output or partial file was left behind"


@pytest.mark.parametrize(
    ("case", "code", "needle"),
    [
        ("missing", 1, "no such file"),
        ("empty", 1, "file is empty"),
        ("random", 1, "not a video or image FFmpeg can read"),
        ("notes", 1, "not a video or image FFmpeg can read"),
        ("cut_header", 1, "not a video or image FFmpeg can read"),
        ("audio", 1, "has no video stream (found: audio)"),
    ],
)
def test_bad_inputs(cases, media, case, code, needle):
    path = cases.get(case, media / "bad" / "missing.mp4")
    before = {p.name for p in path.parent.iterdir()}
    result = run_vsr("upscale", str(path), *TINY)
    _assert_one_line(result, code, needle, path.name)
    _no_outputs(path.parent, before)


def test_truncated_file_fails_and_leaves_nothing(cases):
    path = cases["cut_tail"]
    before = {p.name for p in path.parent.iterdir()}
    result = run_vsr("upscale", str(path), *TINY)
    _assert_one_line(result, 1, "truncated")
    _no_outputs(path.parent, before)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--set", "upscale.tyle=3"], "unknown option tyle for upscale stage 'esrgan' (known options: alpha, batch"),
        (["--set", "upscale.tile=big"], "option tile for upscale stage 'esrgan' must be int | 'auto'"),
        (["--set", "upscale.model=nope"], "unknown model 'nope'"),
        (["--set", "encode.codec=nope"], "unknown encoder 'nope'"),
        (["--set", "novalue"], "--set expects section.key=value"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_errors(sample_clip, args, needle):
    before = {p.name for p in sample_clip.parent.iterdir()}
    result = run_vsr("upscale", str(sample_clip), *args)
    _assert_one_line(result, 2, needle)
    _no_outputs(sample_clip.parent, before)


def test_output_equal_to_input_is_refused(sample_clip):
    data = sample_clip.read_bytes()
    result = run_vsr("upscale", str(sample_clip), "-o", str(sample_clip), *TINY)
    _assert_one_line(result, 2, "would overwrite the input")
    assert sample_clip.read_bytes() == data


def test_existing_output_needs_overwrite(sample_clip, tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep me")
    result = run_vsr("upscale", str(sample_clip), "-o", str(out), *TINY)
    _assert_one_line(result, 2, "already exists")
    assert out.read_bytes() == b"keep me"


def test_unwritable_output_directory(sample_clip, tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "o.mp4"
    _assert_one_line(run_vsr("upscale", str(sample_clip), "-o", str(missing), *TINY), 1, "does not exist")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: directory permissions are not enforced")
        _assert_one_line(run_vsr("upscale", str(sample_clip), "-o", str(ro / "o.mp4"), *TINY), 1, "not writable")
    finally:
        ro.chmod(0o700)


def test_help_is_fast_and_imports_no_tensorflow():
    code = (
        "import sys, vsr.cli.main as m\n"
        "from vsr.plugins import load_registry\n"
        "load_registry()\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy import'\n"
    )
    env = dict(os.environ, VSR_PLUGINS="")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert run_vsr("--help").returncode == 0


def test_the_suite_without_ffmpeg_says_so_in_one_line(tmp_path):
    """A new machine without FFmpeg: the README's test command stops at once with what to install."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(Path(__file__).parent / "test_cli_errors.py")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH=str(tmp_path)),  # no ffprobe, no ffmpeg
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [
        "Exit: ffprobe and ffmpeg not found on PATH: the tests check what vsr writes with FFmpeg's tools; "
        "install FFmpeg first (Debian/Ubuntu: apt-get install -y ffmpeg)"
    ]
