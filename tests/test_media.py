"""Real media: what a player shows survives the upscale (clips made with FFmpeg, checked with ffmpeg/ffprobe)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import TINY, ffmpeg, ffprobe, run_vsr, video_pts
from vsr.sample import cartoon_frame


def displayed_first_frame(path: Path) -> np.ndarray:
    """The first frame as a player shows it: ffmpeg's decode with autorotation, as RGB."""
    info = ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]
    rotation = next((int(s.get("rotation", 0)) for s in info.get("side_data_list", [])), 0)
    w, h = int(info["width"]), int(info["height"])
    if rotation % 180:
        w, h = h, w
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def first_matrix(path: Path) -> tuple[int, ...] | None:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        data = [d for d in frame.side_data if "DISPLAYMATRIX" in str(d.type)]
        return struct.unpack("=9i", bytes(data[0])[:36]) if data else None


@pytest.fixture(scope="module")
def upright(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("phone") / "upright.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x36:rate=6:duration=0.5", "-pix_fmt", "yuv420p", path)
    return path


@pytest.mark.parametrize(("rotate", "suffix"), [(90, ".mp4"), (180, ".mp4"), (270, ".mp4"), (90, ".mov")])
def test_phone_rotation_is_kept(tmp_path, upright, rotate, suffix):
    phone = tmp_path / f"phone{suffix}"
    ffmpeg("-i", upright, "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", phone)
    out = tmp_path / f"out{suffix}"
    result = run_vsr("upscale", str(phone), "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert first_matrix(out) == first_matrix(phone) is not None
    shown_in, shown_out = displayed_first_frame(phone), displayed_first_frame(out)
    assert shown_out.shape == (4 * shown_in.shape[0], 4 * shown_in.shape[1], 3)  # portrait stays portrait
    small = shown_out.reshape(shown_in.shape[0], 4, shown_in.shape[1], 4, 3).mean(axis=(1, 3))
    assert np.corrcoef(small.ravel(), shown_in.astype(float).ravel())[0, 1] > 0.9  # the same picture, upright


def test_flipped_orientation_is_kept_through_segments(tmp_path):
    """EXIF-style orientations with a mirror (PyAV writes them; ffmpeg 5.1's CLI cannot)."""
    src = tmp_path / "mirror.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90, hflip=True)
        for t in range(12):
            frame = av.VideoFrame.from_ndarray(cartoon_frame(t, 48, 32, 12), format="rgb24").reformat(format="yuv420p")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    out = tmp_path / "out.mkv"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--segment", "0.25")  # joined from 4 segments
    assert result.returncode == 0, result.stderr
    assert first_matrix(out) == first_matrix(src) is not None


def _aspect(path: Path) -> tuple[str, str]:
    v = ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]
    return v["sample_aspect_ratio"], v["display_aspect_ratio"]


@pytest.mark.parametrize("kind", ["setsar-ffv1-mkv", "aspect-mp4"])
def test_pixel_aspect_ratio_in_the_container_is_kept(tmp_path, kind):
    src = tmp_path / ("src.mkv" if kind.endswith("mkv") else "src.mp4")
    if kind.startswith("setsar"):
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=6:duration=0.5", "-vf", "setsar=8/9", "-c:v", "ffv1", src)
        expected = ("8:9", "32:27")
    else:
        plain = tmp_path / "plain.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=6:duration=0.5", "-pix_fmt", "yuv420p", plain)
        ffmpeg("-i", plain, "-c", "copy", "-aspect", "16:9", src)  # the container says 16:9, the stream 1:1
        expected = ("4:3", "16:9")
    assert _aspect(src) == expected
    for segment in ("0.25", "100"):  # joined from segments, and in one piece
        out = tmp_path / f"out-{segment}{src.suffix}"
        result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--segment", segment)
        assert result.returncode == 0, result.stderr
        assert _aspect(out) == expected


FFMETADATA = """;FFMETADATA1
title=My Film
artist=Someone
comment=kept
[CHAPTER]
TIMEBASE=1/1000
START=0
END=500
title=Intro
[CHAPTER]
TIMEBASE=1/1000
START=500
END=1000
title=Main
"""


def _description(path: Path) -> dict:
    info = ffprobe(path, "-show_format", "-show_streams", "-show_chapters")
    tags = {
        k.lower(): v for k, v in info["format"].get("tags", {}).items() if k.lower() in ("title", "artist", "comment")
    }
    chapters = [
        (round(float(c["start_time"]), 3), round(float(c["end_time"]), 3), c["tags"]["title"]) for c in info["chapters"]
    ]
    tracks = [
        (
            s["codec_type"],
            s.get("tags", {}).get("language"),
            s.get("tags", {}).get("title"),
            s["disposition"]["default"],
            s["disposition"]["forced"],
        )
        for s in info["streams"]
        if s["codec_type"] != "data"  # MP4 keeps chapters in a text track of its own
    ]
    return {"tags": tags, "chapters": chapters, "tracks": tracks}


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_chapters_metadata_languages_and_flags_are_kept(tmp_path, suffix):
    meta = tmp_path / "meta.txt"
    meta.write_text(FFMETADATA)
    src = tmp_path / f"film{suffix}"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x36:rate=12:duration=1", "-f", "lavfi", "-i", "sine=d=1",
        "-f", "lavfi", "-i", "sine=f=880:d=1", "-i", meta, "-map", "0", "-map", "1", "-map", "2",
        "-map_metadata", "3", "-map_chapters", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-metadata:s:v:0", "language=jpn", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=jpn",
        "-metadata:s:a:1", "title=Japanese", "-disposition:a:0", "0", "-disposition:a:1", "default+forced", src,
    )  # fmt: skip
    before = _description(src)
    assert before["chapters"] and before["tags"]["title"] == "My Film"
    title = "Japanese" if suffix == ".mkv" else None  # MP4 keeps no per-track title
    assert ("audio", "jpn", title, 1, 1) in before["tracks"]
    for segment in ("0.25", "100"):
        out = tmp_path / f"out-{segment}{suffix}"
        result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--segment", segment)
        assert result.returncode == 0, result.stderr
        assert _description(out) == before


def _starts(path: Path) -> tuple[float, float, dict[str, float]]:
    info = ffprobe(path, "-show_format", "-show_streams")
    starts = {s["codec_type"]: float(s["start_time"]) for s in info["streams"]}
    return float(info["format"]["start_time"]), float(info["format"]["duration"]), starts


@pytest.mark.parametrize(("offset", "seconds"), [(3600, 1), (11.4, 2)])
def test_late_starting_transport_streams_keep_their_length(tmp_path, offset, seconds):
    src = tmp_path / "rec.ts"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=64x36:rate=12:duration={seconds}", "-f", "lavfi", "-i", f"sine=d={seconds}",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", "-output_ts_offset", str(offset), src,
    )  # fmt: skip
    start_in, length_in, starts_in = _starts(src)
    assert start_in >= offset
    for segment in ("0.25", "100"):
        out = tmp_path / f"out-{segment}.mkv"
        result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--segment", segment)
        assert result.returncode == 0, result.stderr
        start_out, length_out, starts_out = _starts(out)
        assert start_out == pytest.approx(0, abs=1e-3)
        assert length_out == pytest.approx(length_in, abs=1 / 12)  # within a frame
        lag_in = starts_in["video"] - starts_in["audio"]
        assert starts_out["video"] - starts_out["audio"] == pytest.approx(lag_in, abs=2e-3)  # still in sync


@pytest.mark.parametrize(("trc", "name"), [("smpte2084", "PQ"), ("arib-std-b67", "HLG")])
def test_hdr_sources_keep_their_tags_and_are_warned_about_once(tmp_path, trc, name):
    src = tmp_path / "hdr.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x36:rate=12:duration=0.5", "-pix_fmt", "yuv420p10le",
        "-c:v", "libx265", "-x265-params", "log-level=error", "-color_trc", trc, "-color_primaries", "bt2020",
        "-colorspace", "bt2020nc", src,
    )  # fmt: skip
    out = tmp_path / "out.mkv"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--set", "encode.pix_fmt=yuv420p10le")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"is HDR ({name}): the models were trained on SDR") == 1
    v = ffprobe(out, "-select_streams", "v:0", "-show_streams")["streams"][0]
    assert (v["color_transfer"], v["color_primaries"], v["color_space"]) == (trc, "bt2020", "bt2020nc")


def test_sizes_an_encoder_cannot_take_fail_before_any_upscaling(tmp_path):
    src = tmp_path / "big.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1024x540:rate=6:duration=0.5", "-pix_fmt", "yuv420p", src)
    out = tmp_path / "out.mkv"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY, "--set", "encode.codec=mpeg2video")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "4096x2160 output: mpeg2video cannot encode it" in result.stderr
    assert "upscale:" not in result.stderr  # no network was built, no frame upscaled
    assert not out.exists() and not (tmp_path / ".vsr").exists()


def test_sizes_beyond_the_standard_are_warned_about(caplog):
    import logging

    from stages.encode import EncodeOptions, PyAVEncoder
    from vsr.stage import Job

    encoder = PyAVEncoder(EncodeOptions(), Job(Path("in.mp4"), Path("o.mp4"), Path("o.mp4")))
    with caplog.at_level(logging.WARNING, logger="vsr"):
        encoder.check_output(3840, 2160)  # 4K: fine
        assert not caplog.records
        encoder.check_output(15360, 8640)  # a 4K source x4: x264 writes it, labelled level 6.2, out of spec
    assert "15360x8640 output is beyond H.264 level 6.2" in caplog.text
    with pytest.raises(Exception, match="libsvtav1 encodes at most 16384x8704"):
        PyAVEncoder(EncodeOptions(codec="libsvtav1"), Job(Path("i"), Path("o.mkv"), Path("o.mkv"))).check_output(
            16896, 8704
        )


def _tracks(path: Path) -> list[tuple]:
    return [
        (
            s["codec_type"],
            s["codec_name"],
            s.get("width"),
            s["disposition"]["default"],
            s["disposition"]["attached_pic"],
        )
        for s in ffprobe(path, "-show_streams")["streams"]
    ]


@pytest.fixture(scope="module")
def cover(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cover") / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=40x40:duration=0.1", "-frames:v", "1", path)
    return path


@pytest.mark.parametrize(
    ("source", "suffix"), [("attach-mkv", ".mkv"), ("attach-mkv", ".mp4"), ("pic-mp4", ".mp4"), ("pic-mp4", ".mkv")]
)
def test_cover_art_is_kept_as_it_is(tmp_path, upright, cover, source, suffix):
    if source == "attach-mkv":
        src = tmp_path / "show.mkv"
        ffmpeg("-i", upright, "-c", "copy", "-attach", cover, "-metadata:s:t", "mimetype=image/png", src)
    else:
        src = tmp_path / "song.mp4"
        ffmpeg(
            "-i", upright, "-i", cover, "-map", "0", "-map", "1", "-c", "copy", "-disposition:v:1", "attached_pic", src
        )
    out = tmp_path / f"out{suffix}"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert _tracks(out) == [("video", "h264", 256, 1, 0), ("video", "png", 40, 0, 1)]
    with av.open(str(out)) as container:  # the very picture
        art = next(p for p in container.demux(container.streams.video[1]) if p.size)
        assert bytes(art) == cover.read_bytes()


def test_the_default_video_track_is_upscaled_and_the_others_copied(tmp_path):
    src = tmp_path / "two.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=96x54:rate=6:duration=0.5", "-f", "lavfi", "-i",
        "testsrc2=size=64x36:rate=6:duration=0.5", "-map", "0", "-map", "1", "-pix_fmt", "yuv420p",
        "-disposition:v:0", "0", "-disposition:v:1", "default", src,
    )  # fmt: skip
    out = tmp_path / "out.mkv"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert _tracks(out) == [("video", "h264", 256, 1, 0), ("video", "h264", 96, 0, 0)]  # the default, not the largest
    chosen = tmp_path / "chosen.mkv"
    result = run_vsr("upscale", str(src), "-o", str(chosen), *TINY, "--video-track", "0")
    assert result.returncode == 0, result.stderr
    assert _tracks(chosen) == [("video", "h264", 384, 0, 0), ("video", "h264", 64, 1, 0)]
    wrong = run_vsr("upscale", str(src), "-o", str(tmp_path / "x.mkv"), *TINY, "--video-track", "5")
    assert wrong.returncode == 2 and "has no video track 5 (it has 2: 0 to 1)" in wrong.stderr


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _frames(path: Path, *vf: str) -> list[np.ndarray]:
    info = ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]
    w, h = int(info["width"]), int(info["height"])
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), *vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3))


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory) -> Path:
    """A moving test pattern interlaced by FFmpeg (top field first, 25 frames/s of 50 fields), as from a camcorder."""
    path = tmp_path_factory.mktemp("interlaced") / "pan.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=50", "-t", "0.8", "-vf", "interlace=scan=tff",
        "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-crf", "10", "-pix_fmt", "yuv420p", path,
    )  # fmt: skip
    assert ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]["field_order"] == "tt"
    return path


def test_interlaced_sources_are_deinterlaced_before_the_upscaler(tmp_path, interlaced):
    combed = _frames(interlaced)
    deinterlaced = _frames(interlaced, "-vf", "bwdif=mode=send_frame")
    out = tmp_path / "out.mkv"
    result = run_vsr("upscale", str(interlaced), "-o", str(out), *TINY, "--segment", "0.25")
    assert result.returncode == 0, result.stderr
    assert "interlaced source (top field first): deinterlacing with bwdif at frame rate" in result.stderr
    v = ffprobe(out, "-select_streams", "v:0", "-show_streams")["streams"][0]
    assert v.get("field_order", "progressive") == "progressive"
    shown = [f.reshape(96, 4, 128, 4, 3).mean(axis=(1, 3)) for f in _frames(out)]
    assert len(shown) == len(combed) == 20
    near_clean = np.mean([_psnr(a, b) for a, b in zip(shown, deinterlaced, strict=True)])
    near_combed = np.mean([_psnr(a, b) for a, b in zip(shown, combed, strict=True)])
    assert near_clean > near_combed + 1, (near_clean, near_combed)
    assert video_pts(out) == pytest.approx(video_pts(interlaced), abs=1e-3)  # same frames, same times

    fields = tmp_path / "fields.mkv"
    result = run_vsr("upscale", str(interlaced), "-o", str(fields), *TINY, "--set", "decode.deinterlace=field")
    assert result.returncode == 0, result.stderr
    times = video_pts(fields)
    assert len(times) == 40 and np.allclose(np.diff(times), 0.02, atol=1e-3)  # one frame per field, 50/s

    off = tmp_path / "off.mkv"
    result = run_vsr("upscale", str(interlaced), "-o", str(off), *TINY, "--set", "decode.deinterlace=off")
    assert result.returncode == 0 and "deinterlacing" not in result.stderr
