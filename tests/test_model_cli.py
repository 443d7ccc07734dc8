"""``vsr models`` and ``vsr upscale --model``: imports, listing, removal, models used by path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import ffprobe, run_vsr

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
FAST = ["--set", "encode.speed=ultrafast", "--no-smooth"]


@pytest.fixture
def store(tmp_path) -> dict[str, str]:
    """A private model store for one test, so imports do not leak into others."""
    return {"VSR_CACHE_DIR": str(tmp_path / "store")}


def _size(path: Path) -> tuple[int, int]:
    stream = ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]
    return stream["width"], stream["height"]


def test_import_list_info_upscale_remove(tmp_path, sample_clip, store):
    source = FIXTURES / "rrdb_x2_fp16.pth"
    result = run_vsr("models", "import", str(source), "--name", "my-x2", "--licence", "CC0", **store)
    assert result.returncode == 0, result.stderr
    assert "imported my-x2: rrdbnet block=1 feat=8 grow_ch=4, x2" in result.stdout

    listing = run_vsr("models", **store)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.split()[:1] == ["my-x2"])
    assert "x2" in row and "imported (pytorch)" in row and "CC0" in row and "yes" in row
    assert "realesrgan-x4plus-anime" in listing.stdout  # the built-ins are listed too

    info = json.loads(run_vsr("models", "info", "my-x2", "--json", **store).stdout)
    assert info["scale"] == 2 and info["arch"] == "rrdbnet" and info["config"]["num_block"] == 1
    assert info["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert info["source_format"] == "pytorch" and info["converted_at"].startswith("20")

    again = run_vsr("models", "import", str(source), "--name", "my-x2", **store)
    assert again.returncode == 2 and "already imported" in again.stderr and "--replace" in again.stderr
    shadow = run_vsr("models", "import", str(source), "--name", "realesrgan-x4plus", **store)
    assert shadow.returncode == 2 and "already provided" in shadow.stderr

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(sample_clip.read_bytes())
    up = run_vsr("upscale", str(clip), "--model", "my-x2", *FAST, **store)
    assert up.returncode == 0, up.stderr
    assert _size(tmp_path / "clip.x2.mp4") == (128, 72)  # the default name says x2

    assert run_vsr("models", "remove", "my-x2", **store).returncode == 0
    assert "my-x2" not in run_vsr("models", **store).stdout
    gone = run_vsr("upscale", str(clip), "--model", "my-x2", "-o", str(tmp_path / "o.mp4"), **store)
    assert gone.returncode == 2 and "unknown model 'my-x2'" in gone.stderr
    builtin = run_vsr("models", "remove", "realesrgan-x4plus", **store)
    assert builtin.returncode == 2 and "cannot be removed" in builtin.stderr


def test_model_file_used_by_path_is_imported_once(tmp_path, sample_clip, store):
    model = tmp_path / "4x_Compact Test.pth"
    model.write_bytes((FIXTURES / "srvgg_x4_views.pth").read_bytes())
    first = run_vsr("upscale", str(sample_clip), "--model", str(model), "-o", str(tmp_path / "a.mp4"), *FAST, **store)
    assert first.returncode == 0, first.stderr
    assert "imported" in first.stderr and "as file-" in first.stderr
    assert _size(tmp_path / "a.mp4") == (256, 144)
    second = run_vsr("upscale", str(sample_clip), "--model", str(model), "-o", str(tmp_path / "b.mp4"), *FAST, **store)
    assert second.returncode == 0 and "imported" not in second.stderr  # keyed by content: no second conversion
    assert "file-" in run_vsr("models", **store).stdout


def test_damaged_import_is_a_clear_error(tmp_path, sample_clip, store):
    assert run_vsr("models", "import", str(FIXTURES / "srvgg_x2_bare.pth"), **store).returncode == 0
    npz = Path(store["VSR_CACHE_DIR"]) / "models" / "srvgg_x2_bare.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    result = run_vsr("upscale", str(sample_clip), "--model", "srvgg_x2_bare", "-o", str(tmp_path / "o.mp4"), **store)
    assert result.returncode == 1
    assert "damaged; import" in result.stderr and "srvgg_x2_bare.pth again" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["models", "import", "missing.pth"], 1, "no such model file"),
        (["models", "import", "notes.pth", "--name", "Bad Name"], 2, "invalid model name"),
        (["models", "import", "notes.pth"], 1, "not a PyTorch checkpoint"),
        (["models", "import", "lonely.param"], 1, "missing (an ncnn model is a .param file and a .bin file"),
        (["models", "info", "nope"], 2, "unknown model 'nope'"),
        (["upscale", "CLIP", "--model", "missing.pth"], 1, "no such model file"),
        (["upscale", "CLIP", "--model", "nope"], 2, "unknown model 'nope'"),
    ],
)
def test_model_mistakes_are_one_line(tmp_path, sample_clip, store, args, code, needle):
    (tmp_path / "notes.pth").write_text("not a model\n")
    (tmp_path / "lonely.param").write_text("7767517\n")
    args = [str(sample_clip) if a == "CLIP" else a for a in args]
    result = (
        run_vsr(*args, "-o", str(tmp_path / "o.mp4"), cwd=tmp_path, **store)
        if args[0] == "upscale"
        else (run_vsr(*args, cwd=tmp_path, **store))
    )
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("vsr: error:") and needle in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_user_ncnn_files_import_through_the_same_path(tmp_path, store):
    from stages.realesrgan import weights_dir

    for stem, name in [("REALESRGAN_ANIMAVIDEOV3_UP4X", "mine"), ("REALESRGAN_ANIMAVIDEOV3_UP2X", "bicubic")]:
        for suffix in (".param", ".bin"):
            (tmp_path / f"{name}{suffix}").write_bytes((weights_dir() / f"{stem}{suffix}").read_bytes())
    ok = run_vsr("models", "import", str(tmp_path / "mine.bin"), **store)  # either file of the pair works
    assert ok.returncode == 0, ok.stderr
    assert "imported mine: srvgg conv=16 feat=64, x4" in ok.stdout and "from ncnn" in ok.stdout
    refused = run_vsr("models", "import", str(tmp_path / "bicubic.param"), **store)
    assert refused.returncode == 1 and "bicubic" in refused.stderr and "x2/x3 variant" in refused.stderr
