from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "plugins"))
os.environ["VSR_PLUGINS"] = "vsr_tiny"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vsr.sample import cartoon_frame, write_sample  # noqa: E402

#: A preset with the tiny random model: fast enough for plumbing tests.
TINY = ["--set", "upscale.model=tiny-srvgg", "--set", "encode.speed=ultrafast"]


def pytest_configure(config: pytest.Config) -> None:
    """The tests judge vsr's outputs with FFmpeg's own tools: without them, one line saying so, not 60 errors."""
    missing = [tool for tool in ("ffprobe", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        pytest.exit(
            f"{' and '.join(missing)} not found on PATH: the tests check what vsr writes with FFmpeg's tools; "
            "install FFmpeg first (Debian/Ubuntu: apt-get install -y ffmpeg)",
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache")
    os.environ["VSR_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def sample_clip(media: Path) -> Path:
    """1 s, 64x36, 12 fps H.264 + AAC."""
    return write_sample(media / "sample.mp4", seconds=1.0, width=64, height=36, fps=12)


@pytest.fixture(scope="session")
def vfr_clip(media: Path) -> Path:
    """Variable frame rate: irregular pts in a 1/90000 time base, in Matroska."""
    path = media / "vfr.mkv"
    tb = Fraction(1, 90000)
    gaps = [3000, 3000, 6000, 1500, 4500, 3000, 9000, 3000, 3000, 1500]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        pts = 0
        for i, gap in enumerate(gaps):
            frame = av.VideoFrame.from_ndarray(cartoon_frame(i, 48, 32, 10), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, tb
            out.mux(stream.encode(frame))
            pts += gap
        out.mux(stream.encode(None))
    return path


def ffmpeg(*args: str | Path) -> None:
    """Make a fixture with the real ffmpeg (quiet, overwriting)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def ffprobe(path: Path, *args: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def video_pts(path: Path) -> list[float]:
    """Presentation times of every video frame, in seconds, sorted."""
    data = ffprobe(path, "-select_streams", "v:0", "-show_entries", "frame=pts_time")
    return sorted(float(f["pts_time"]) for f in data["frames"])


def streams(path: Path) -> list[dict]:
    return ffprobe(path, "-show_streams")["streams"]


def vsr_env(**extra: str) -> dict[str, str]:
    """Environment for a ``vsr`` subprocess that can load the test plugin."""
    path = os.pathsep.join([str(TESTS / "plugins"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


def vsr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vsr.cli.main", *args]


def run_vsr(*args: str, cwd: Path | None = None, process: bool = False, **env: str) -> subprocess.CompletedProcess:
    """``vsr ARGS`` as a user would run it (``env``: extra variables): in this process through
    ``vsr.cli.main.main``, or in a real process (``process``) where that is the point (start-up, a fresh
    process's caches, signals)."""
    if process:
        return subprocess.run(
            vsr_command(*args), capture_output=True, text=True, cwd=cwd, env=vsr_env(**env), timeout=600
        )
    return vsr_main(*args, cwd=cwd, env=env)


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def spawn_vsr(*args: str, **env: str) -> subprocess.Popen:
    """``vsr ARGS`` in the background, stderr captured (to kill it half-way)."""
    return subprocess.Popen(vsr_command(*args), stderr=subprocess.PIPE, text=True, env=vsr_env(**env))


def finished_segments(work: Path) -> int:
    """How many segments the work folder's manifest lists (a segment counts once it is recorded there)."""
    try:
        return len(json.loads((work / "manifest.json").read_text())["segments"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for_segments(work: Path, proc: subprocess.Popen, count: int) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if finished_segments(work) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("no segments appeared")


def vsr_main(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``vsr ARGS`` in this process (``vsr.cli.main.main``): its exit code, stdout and stderr.

    For tests where a real process is not the point. ``cwd`` and ``env`` hold for the call; the signal
    handlers ``main`` installs, the working folder and the environment are put back.
    """
    import contextlib
    import io
    import logging
    import signal

    from vsr.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("vsr")
    saved = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP")}
    streams = [(h, h.stream) for h in logger.handlers if type(h) is logging.StreamHandler]  # not pytest's own
    environ = dict(os.environ)
    here = os.getcwd()
    propagate, level = logger.propagate, logger.level  # main() keeps vsr's lines to itself; caplog needs them
    job_level = logging.getLogger("vsr.job").level  # a batch quietens the per-file lines
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            for handler, _ in streams:
                handler.setStream(err)
            code = main([str(a) for a in args])  # a handler main() adds on its first call writes here too
    finally:
        logger.propagate, logger.level = propagate, level
        logging.getLogger("vsr.job").setLevel(job_level)
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        for handler, stream in streams:
            handler.setStream(stream)
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
    return subprocess.CompletedProcess(["vsr", *map(str, args)], code, out.getvalue(), err.getvalue())
