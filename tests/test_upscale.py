"""End to end: real files in, real files out, checked with ffprobe."""

from __future__ import annotations

from dataclasses import replace

import av
import numpy as np
import pytest

from conftest import TINY, decode_rgb, ffmpeg, ffprobe, run_vsr, streams, video_pts
from vsr.device import default_precision
from vsr.outputs import default_output
from vsr.plan import plan_run
from vsr.plugins import load_registry
from vsr.running import upscale_file


def _video(info: list[dict]) -> dict:
    return next(s for s in info if s["codec_type"] == "video")


def test_sample_clip_keeps_frames_timestamps_audio_and_colour(sample_clip, tmp_path):
    out = tmp_path / "out.mp4"
    # a real process: its log says what a fresh start builds, and that TensorFlow's start-up chatter is hidden
    result = run_vsr("upscale", str(sample_clip), "-o", str(out), *TINY, process=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    src, dst = streams(sample_clip), streams(out)
    v_in, v_out = _video(src), _video(dst)
    assert (int(v_out["width"]), int(v_out["height"])) == (4 * int(v_in["width"]), 4 * int(v_in["height"]))
    assert video_pts(out) == pytest.approx(video_pts(sample_clip), abs=1e-4)
    assert len(video_pts(out)) == 12
    a_in = next(s for s in src if s["codec_type"] == "audio")
    a_out = next(s for s in dst if s["codec_type"] == "audio")
    assert a_out["codec_name"] == a_in["codec_name"] == "aac"
    assert float(a_out["duration"]) == pytest.approx(float(a_in["duration"]), abs=0.03)
    # the sample is tagged BT.601 (SD): the tags survive; range is limited
    assert v_out["color_space"] == "smpte170m" and v_out["color_range"] == "tv"
    assert "upscale: tiny-srvgg" in result.stderr and "on CPU" in result.stderr
    # precision and tile default to "auto", resolved for this machine and named in the log
    assert f"in {default_precision(gpu=False)} (auto)" in result.stderr and " px (auto)" in result.stderr
    assert all(line.startswith("vsr: ") for line in result.stderr.splitlines()), result.stderr  # no TF chatter


def test_variable_frame_rate_survives(vfr_clip):
    result = run_vsr("upscale", str(vfr_clip), *TINY)  # default output name beside the input
    assert result.returncode == 0, result.stderr
    out = vfr_clip.with_name("vfr.x4.mkv")
    assert default_output(vfr_clip) == out
    pts_in, pts_out = video_pts(vfr_clip), video_pts(out)
    assert len(set(np.round(np.diff(pts_in), 4))) > 2  # really variable
    assert pts_out == pytest.approx(pts_in, abs=1e-3)
    out.unlink()


def test_untagged_hd_output_is_tagged_bt709_and_keeps_aspect(tmp_path):
    src = tmp_path / "untagged.mkv"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=192x180:rate=5:duration=0.4",
        "-vf",
        "setsar=32/27",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        str(src),
    )
    assert "color_space" not in _video(streams(src))
    out = tmp_path / "tagged.mkv"
    assert run_vsr("upscale", str(src), "-o", str(out), *TINY).returncode == 0
    v = _video(streams(out))
    assert (v["color_space"], v["color_primaries"], v["color_transfer"]) == ("bt709", "bt709", "bt709")
    assert (v["height"], v["width"]) == (720, 768)
    assert v["sample_aspect_ratio"] == "32:27"  # anamorphic stays anamorphic


@pytest.mark.parametrize(
    ("matrix", "rng", "pix_fmt"),
    [
        ("bt709", "tv", "yuv420p"),
        ("bt709", "pc", "yuv420p"),
        ("bt470bg", "tv", "yuv420p"),
        ("bt709", "tv", "yuv420p10le"),
    ],
)
def test_decoder_honours_matrix_range_and_depth(tmp_path, matrix, rng, pix_fmt):
    """ffmpeg encodes a known colour with a given matrix/range; we must get the colour back."""
    from stages.decode import PyAVDecoder
    from vsr.stage import Job

    colour = (200, 60, 40)
    src = tmp_path / "solid.mkv"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"color=c=0x{bytes(colour).hex()}:s=64x64:d=0.2:r=5",
        "-vf",
        f"scale=out_color_matrix={matrix}:out_range={rng}",
        "-pix_fmt",
        pix_fmt,
        "-colorspace",
        matrix,
        "-color_range",
        rng,
        "-c:v",
        "ffv1",
        str(src),
    )
    job = Job(src, tmp_path / "x.mkv", tmp_path / "x.mkv")
    media = PyAVDecoder(PyAVDecoder.Options(), job).probe()
    job = replace(job, media=media)
    frame = next(iter(PyAVDecoder(PyAVDecoder.Options(), job).process(iter(()))))
    pixels = frame.pixels.astype(float)
    if pix_fmt.endswith("10le"):
        assert frame.pixels.dtype == np.uint16 and media.bit_depth == 10
        pixels = pixels / 257
    assert np.abs(pixels[32, 32] - colour).max() <= 3, pixels[32, 32]


def test_ten_bit_output(tmp_path, sample_clip):
    out = tmp_path / "deep.mkv"
    result = run_vsr(
        "upscale",
        str(sample_clip),
        "-o",
        str(out),
        "--preset",
        "film",
        "--set",
        "upscale.model=tiny-srvgg",
        "--set",
        "encode.speed=ultrafast",
    )
    assert result.returncode == 0, result.stderr
    assert all(line.startswith("vsr: ") for line in result.stderr.splitlines()), result.stderr  # no x265 chatter
    v = _video(streams(out))
    assert v["codec_name"] == "hevc" and v["pix_fmt"] == "yuv420p10le"
    assert len(video_pts(out)) == 12


def test_still_image_in_png_out(tmp_path):
    from vsr.sample import cartoon_frame

    src = tmp_path / "still.png"
    av.VideoFrame.from_ndarray(cartoon_frame(3, 40, 30, 10), format="rgb24").save(str(src))
    result = run_vsr("upscale", str(src), *TINY)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "still.x4.png"
    info = _video(streams(out))
    assert (info["codec_name"], info["width"], info["height"]) == ("png", 160, 120)
    jpg = tmp_path / "still.jpg"
    assert run_vsr("upscale", str(src), "-o", str(jpg), *TINY).returncode == 0
    assert _video(streams(jpg))["codec_name"] == "mjpeg"
    refused = run_vsr("upscale", str(src), "-o", str(tmp_path / "still.mp4"), *TINY)
    assert refused.returncode == 2 and "still image" in refused.stderr


def test_subtitles_audio_tracks_and_attachments_are_copied(sample_clip, tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,800\nHello\n")
    font = tmp_path / "font.ttf"
    font.write_bytes(b"\0\1\0\0fake font")
    src = tmp_path / "rich.mkv"
    ffmpeg(
        "-i",
        str(sample_clip),
        "-i",
        str(srt),
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "0:a",
        "-map",
        "1",
        "-c:v",
        "copy",
        "-c:a:0",
        "copy",
        "-c:a:1",
        "libopus",
        "-c:s",
        "srt",
        "-attach",
        str(font),
        "-metadata:s:t",
        "mimetype=application/x-truetype-font",
        str(src),
    )
    out = tmp_path / "rich.x4.mkv"
    result = run_vsr("upscale", str(src), "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    kinds = [(s["codec_type"], s["codec_name"]) for s in streams(out)]
    assert ("audio", "aac") in kinds and ("audio", "opus") in kinds and ("subtitle", "subrip") in kinds
    assert any(k[0] == "attachment" for k in kinds), kinds

    def sub_packets(path):
        return [
            (p["pts_time"], p["duration_time"])
            for p in ffprobe(path, "-select_streams", "s", "-show_packets")["packets"]
        ]

    assert len(sub_packets(out)) == 1 and sub_packets(out) == sub_packets(src)  # timing unchanged


@pytest.mark.slow
def test_real_anime_weights_end_to_end(tmp_path):
    """The README's main job on a tiny clip: real weights, real encoder, checked output."""
    from vsr.sample import write_sample

    clip = write_sample(tmp_path / "tiny.mp4", seconds=0.25, width=48, height=32, fps=12)
    plan = plan_run(load_registry(), "anime")
    assert [s.role for s in plan.stages] == ["decode", "upscale", "smooth", "encode"]  # the preset smooths
    result = upscale_file(plan, clip)
    assert result.output == tmp_path / "tiny.x4.mp4" and result.frames == 3
    v = _video(streams(result.output))
    assert (v["width"], v["height"], v["codec_name"]) == (192, 128, "h264")
    assert any(s["codec_type"] == "audio" for s in streams(result.output))
    # the upscaled frames, brought back to the input size, must look like the input
    src, up = decode_rgb(clip), decode_rgb(result.output)
    for a, b in zip(src, up, strict=True):
        small = b.reshape(32, 4, 48, 4, 3).mean(axis=(1, 3))
        a = a.astype(float)
        assert np.abs(small - a).mean() < 12  # the model redraws 2-px stripes and outlines on a 48x32 frame
        assert np.corrcoef(small.ravel(), a.ravel())[0, 1] > 0.95


def test_other_encoders_and_containers(sample_clip, tmp_path):
    av1 = tmp_path / "a.mkv"
    result = run_vsr(
        "upscale",
        str(sample_clip),
        "-o",
        str(av1),
        *TINY,
        "--set",
        "encode.codec=libsvtav1",
        "--set",
        "encode.speed=12",
        "--set",
        "encode.crf=40",
    )
    assert result.returncode == 0, result.stderr
    assert [s["codec_name"] for s in streams(av1)] == ["av1", "aac"]
    webm = tmp_path / "v.webm"
    result = run_vsr(
        "upscale",
        str(sample_clip),
        "-o",
        str(webm),
        *TINY,
        "--set",
        "encode.codec=libvpx-vp9",
        "--set",
        "encode.speed=8",
    )
    assert result.returncode == 0, result.stderr
    assert "audio stream #1 (aac) is re-encoded as libopus" in result.stderr  # WebM holds Opus/Vorbis only
    assert [s["codec_name"] for s in streams(webm)] == ["vp9", "opus"]
