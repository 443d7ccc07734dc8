"""What real folders hold beyond plain video: transparency, HDR10 at 10 bits with its metadata, animations.

Fixtures are made by FFmpeg or Pillow; outputs are judged by ffprobe, by
FFmpeg's libvpx decoder (the one that reads VP9's alpha) and by Pillow.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, ffmpeg, ffprobe, streams, video_pts, vsr_main
from vsr.hdr import read_hdr

BICUBIC = ["--set", "upscale.alpha=bicubic"]  # the tiny test model has random weights: its alpha means nothing
#: A 96x64 clip whose left half is opaque and right half transparent.
HALF = "testsrc2=s=96x64:r=12:d=1,format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(lt(X,W/2),255,0)'"


def _alpha(path: Path, decoder: tuple[str, ...] = ()) -> np.ndarray:
    """The first frame's alpha plane, as FFmpeg decodes it (``decoder``: e.g. libvpx-vp9 for VP9's alpha)."""
    info = streams(path)[0]
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            *decoder,
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgba",
            "-f",
            "rawvideo",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(info["height"], info["width"], 4)[..., 3]


def _half_transparent(alpha: np.ndarray) -> None:
    """The left half opaque, the right half clear, as the source (4x: edges aside)."""
    width = alpha.shape[1]
    assert alpha[:, : width // 2 - 8].min() >= 250, "the opaque half lost its opacity"
    assert alpha[:, width // 2 + 8 :].max() <= 5, "the transparent half became opaque"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("alpha")
    ffmpeg("-f", "lavfi", "-i", HALF, "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", where / "logo.webm")
    ffmpeg("-f", "lavfi", "-i", HALF, "-frames:v", "6", "-c:v", "prores_ks", "-profile:v", "4444",
           "-pix_fmt", "yuva444p10le", where / "logo.mov")  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", HALF, "-frames:v", "1", where / "logo.png")
    palette = f"{HALF},split[a][b];[a]palettegen=reserve_transparent=1[p];[b][p]paletteuse"
    ffmpeg("-f", "lavfi", "-i", palette, "-frames:v", "6", where / "sticker.gif")
    return where


def _alpha_mode(path: Path) -> str | None:
    tags = streams(path)[0].get("tags", {})
    return next((v for k, v in tags.items() if k.lower() == "alpha_mode"), None)


def test_vp9_alpha_in_webm_is_kept(tmp_path, sources):
    out = tmp_path / "logo.x4.webm"
    result = vsr_main("upscale", sources / "logo.webm", "-o", out, *TINY, *BICUBIC)
    assert result.returncode == 0, result.stderr
    assert streams(out)[0]["codec_name"] == "vp9" and _alpha_mode(out) == "1"
    _half_transparent(_alpha(out, ("-c:v", "libvpx-vp9")))
    assert len(video_pts(out)) == 12
    dropped = tmp_path / "dropped.webm"  # asked to drop it: no alpha, and no tag that says there is
    result = vsr_main("upscale", sources / "logo.webm", "-o", dropped, *TINY, "--set", "encode.alpha=drop")
    assert result.returncode == 0 and _alpha_mode(dropped) is None
    assert _alpha(dropped, ("-c:v", "libvpx-vp9")).min() == 255


def test_prores_4444_keeps_alpha_with_keep_and_mp4_is_refused_before_any_work(tmp_path, sources):
    out = tmp_path / "logo.x4.mov"
    result = vsr_main("upscale", sources / "logo.mov", "-o", out, *TINY, *BICUBIC, "--set", "encode.alpha=keep")
    assert result.returncode == 0, result.stderr
    video = streams(out)[0]
    assert video["codec_name"] == "prores" and video["codec_tag_string"] == "ap4h" and "yuva444" in video["pix_fmt"]
    _half_transparent(_alpha(out))
    # the preset's x264/x265 cannot hold it: said once, the output opaque
    plain = tmp_path / "plain.mov"
    result = vsr_main("upscale", sources / "logo.mov", "-o", plain, *TINY)
    assert result.returncode == 0
    assert result.stderr.count("has transparency (alpha)") == 1 and "encode.alpha=keep" in result.stderr
    assert not streams(plain)[0]["pix_fmt"].startswith("yuva")
    refused = vsr_main("upscale", sources / "logo.mov", "-o", tmp_path / "k.mp4", *TINY, "--set", "encode.alpha=keep")
    assert refused.returncode == 2 and "mp4" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("k*"))


def test_a_transparent_png_stays_transparent_and_a_jpeg_says_what_it_loses(tmp_path, sources):
    from PIL import Image

    out = tmp_path / "logo.x4.png"
    result = vsr_main("upscale", sources / "logo.png", "-o", out, *TINY, *BICUBIC)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.mode == "RGBA" and image.size == (384, 256)
        _half_transparent(np.asarray(image)[..., 3])
    jpeg = vsr_main("upscale", sources / "logo.png", "-o", tmp_path / "logo.jpg", *TINY)
    assert jpeg.returncode == 0 and "which .jpg cannot hold" in jpeg.stderr
    keep = vsr_main("upscale", sources / "logo.png", "-o", tmp_path / "k.jpg", *TINY, "--set", "encode.alpha=keep")
    assert keep.returncode == 2 and not (tmp_path / "k.jpg").exists()


def test_a_transparent_gif_stays_a_transparent_gif(tmp_path, sources):
    from PIL import Image

    result = vsr_main("upscale", sources / "sticker.gif", *TINY, *BICUBIC, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = sources / "sticker.x4.gif"  # a GIF's default output is a GIF beside it
    with Image.open(out) as image:
        assert image.format == "GIF" and image.n_frames == 6 and image.info.get("loop") == 0
        rgba = np.asarray(image.convert("RGBA"))
        assert "transparency" in image.info
    _half_transparent(rgba[..., 3])
    assert video_pts(out) == video_pts(sources / "sticker.gif")
    # into Matroska, VP9 keeps it when asked
    mkv = tmp_path / "sticker.mkv"
    result = vsr_main("upscale", sources / "sticker.gif", "-o", mkv, *TINY, *BICUBIC, "--set", "encode.alpha=keep")
    assert result.returncode == 0, result.stderr
    _half_transparent(_alpha(mkv, ("-c:v", "libvpx-vp9")))


def test_stills_whose_transparency_hides_in_a_palette_a_tiff_or_beside_a_profile_keep_it(tmp_path):
    """A palette PNG's tRNS, a TIFF's alpha, an RGBA PNG with an ICC profile and EXIF (PyAV fails on such side
    data): each keeps its transparency."""
    from PIL import Image, ImageCms

    rgba = Image.new("RGBA", (48, 32), (200, 40, 40, 255))
    rgba.paste((0, 0, 0, 0), (24, 0, 48, 32))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "vsr-test"
    rgba.save(tmp_path / "profiled.png", icc_profile=icc, exif=exif.tobytes())
    rgba.save(tmp_path / "layer.tif")
    rgba.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png", transparency=0)
    palette = Image.open(tmp_path / "palette.png")
    assert palette.mode == "P" and "transparency" in palette.info
    for name in ("profiled.png", "layer.tif", "palette.png"):
        out = tmp_path / f"out-{name}"
        result = vsr_main("upscale", tmp_path / name, "-o", out, *TINY, *BICUBIC)
        assert result.returncode == 0, result.stderr
        with Image.open(out) as image:
            assert image.mode == "RGBA", name
            alpha = np.asarray(image.getchannel("A"))
        assert alpha[:, :80].min() >= 250 and alpha[:, 112:].max() <= 5, name
        if name == "profiled.png":
            assert Image.open(out).info.get("icc_profile") == icc


def test_animated_webp_and_apng_in_and_out(tmp_path):
    from PIL import Image

    frames = [Image.new("RGBA", (40, 32), (40 * i, 200, 90, 255 if i % 2 else 128)) for i in range(5)]
    webp = tmp_path / "anim.webp"
    frames[0].save(webp, save_all=True, append_images=frames[1:], duration=[100, 50, 200, 100, 100], loop=0)
    result = vsr_main("upscale", webp, *TINY, *BICUBIC)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "anim.x4.webp") as out:
        assert out.is_animated and out.n_frames == 5 and out.size == (160, 128)
        durations = []
        for i in range(5):
            out.seek(i)
            out.load()
            durations.append(out.info["duration"])
            assert abs(int(np.asarray(out.convert("RGBA"))[..., 3].mean()) - (255 if i % 2 else 128)) <= 3
        assert durations[:4] == [100, 50, 200, 100]
    mp4 = tmp_path / "anim.mp4"  # into a video, at its own times, the last frame shown as long as it was
    assert vsr_main("upscale", webp, "-o", mp4, *TINY).returncode == 0
    assert video_pts(mp4) == [0.0, 0.1, 0.15, 0.35, 0.45]
    assert float(ffprobe(mp4, "-show_format")["format"]["duration"]) == pytest.approx(0.55, abs=0.002)
    gif = tmp_path / "anim.gif"
    assert vsr_main("upscale", webp, "-o", gif, *TINY, *BICUBIC).returncode == 0
    with Image.open(gif) as out:
        shown = []
        for i in range(out.n_frames):
            out.seek(i)
            out.load()
            shown.append(out.info["duration"])
        assert shown == [100, 50, 200, 100, 100]
    # an animated PNG named .png (as most are): read as an animation, written as one
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.5", "-f", "apng", "-plays", "0", tmp_path / "a.png")
    result = vsr_main("upscale", tmp_path / "a.png", *TINY)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "a.x4.png"
    with Image.open(out) as apng:
        assert apng.format == "PNG" and apng.is_animated and apng.n_frames == 5 and apng.size == (192, 128)
    # a one-frame animated WebP is a still
    frames[1].save(tmp_path / "one.webp", save_all=True, append_images=[], duration=[100], loop=0)
    assert vsr_main("upscale", tmp_path / "one.webp", *TINY, *BICUBIC).returncode == 0
    with Image.open(tmp_path / "one.x4.webp") as still:
        assert still.size == (160, 128)


def test_a_sticker_that_turns_transparent_after_its_first_frame_keeps_it(tmp_path):
    from PIL import Image

    frames = [Image.new("RGBA", (40, 32), (30 * i, 90, 200, 255)) for i in range(4)]
    for frame in frames[2:]:
        frame.paste((0, 0, 0, 0), (20, 0, 40, 32))
    frames[0].save(tmp_path / "late.png", save_all=True, append_images=frames[1:], duration=100, loop=0)
    # Pillow writes an animated WebP without alpha when its first frame is opaque: FFmpeg's libwebp writes it
    ffmpeg("-f", "apng", "-i", tmp_path / "late.png", "-c:v", "libwebp_anim", "-pix_fmt", "yuva420p", "-lossless", "1",
           tmp_path / "late.webp")  # fmt: skip
    for source in ("late.webp", "late.png"):
        out = tmp_path / f"out-{source}"
        result = vsr_main("upscale", tmp_path / source, "-o", out, *TINY, *BICUBIC)
        assert result.returncode == 0, result.stderr
        with Image.open(out) as image:
            minimum = []
            for i in range(image.n_frames):
                image.seek(i)
                minimum.append(int(np.asarray(image.convert("RGBA").getchannel("A")).min()))
        assert minimum[:2] == [255, 255] and max(minimum[2:]) <= 5, (source, minimum)


MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def _side_data(path: Path) -> dict[str, dict]:
    frame = ffprobe(path, "-select_streams", "v", "-read_intervals", "%+#1", "-show_frames")["frames"][0]
    return {d["side_data_type"]: d for d in frame.get("side_data_list", [])}


@pytest.fixture(scope="module")
def hdr10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = tmp_path_factory.mktemp("hdr") / "hdr10.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=12:d=0.5", "-pix_fmt", "yuv420p10le", "-c:v", "libx265",
           "-x265-params", f"log-level=error:hdr10=1:repeat-headers=1:master-display={MASTER}:max-cll=1000,400",
           "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", clip)  # fmt: skip
    return clip


def _values(side_data: dict) -> dict[str, float]:
    return {k: float(Fraction(v)) for k, v in side_data.items() if k != "side_data_type"}


@pytest.mark.parametrize("codec", [None, "libsvtav1"])
def test_hdr10_is_encoded_at_10_bits_with_its_mastering_display_and_light_level(tmp_path, hdr10, codec):
    out = tmp_path / ("hdr.mkv" if codec else "hdr.mp4")
    chosen = ["--set", f"encode.codec={codec}"] if codec else []  # SVT-AV1 takes the preset's speed name too
    result = vsr_main("upscale", hdr10, "-o", out, *TINY, *chosen)  # the preset says x264 8-bit
    assert result.returncode == 0, result.stderr
    video = streams(out)[0]
    assert video["pix_fmt"] == "yuv420p10le"
    assert (video["codec_name"], video["profile"]) == (("av1", "Main") if codec else ("hevc", "Main 10"))
    assert (video["color_transfer"], video["color_primaries"]) == ("smpte2084", "bt2020")
    kept, source = _side_data(out), _side_data(hdr10)
    for kind in ("Mastering display metadata", "Content light level metadata"):
        assert kind in kept, kind
        want, got = _values(source[kind]), _values(kept[kind])
        assert got.keys() == want.keys() and all(abs(got[k] - want[k]) <= 1e-3 * max(1, want[k]) for k in want), kind
    assert kept["Content light level metadata"]["max_content"] == 1000
    if not codec:
        assert "libx264 at 10 bits plays in few players" in result.stderr
        assert video["codec_tag_string"] == "hvc1"  # what Safari and QuickTime play (FFmpeg's default is hev1)


def test_an_8_bit_output_of_a_10_bit_source_is_said_and_a_format_the_encoder_lacks_is_refused(tmp_path, hdr10):
    out = tmp_path / "eight.mp4"
    result = vsr_main("upscale", hdr10, "-o", out, *TINY, "--set", "encode.pix_fmt=yuv420p")
    assert result.returncode == 0, result.stderr
    assert streams(out)[0]["pix_fmt"] == "yuv420p" and "may show banding" in result.stderr
    # PyAV's libvpx has no 10-bit formats: said before any work, not after the upscale
    refused = vsr_main("upscale", hdr10, "-o", tmp_path / "ten.webm", *TINY, "--set", "encode.pix_fmt=yuv420p10le")
    assert refused.returncode == 2 and "libvpx-vp9 cannot write pixel format yuv420p10le" in refused.stderr
    assert not list(tmp_path.glob("*ten*"))


def test_read_hdr_names_dynamic_metadata_and_passes_over_unknown_side_data():
    class Item:
        def __init__(self, kind: str, data: bytes = b"") -> None:
            self.type, self.data = f"Type.{kind}", data

        def __bytes__(self) -> bytes:
            return self.data

    class Unknown:
        @property
        def type(self):
            raise ValueError("31 is not a valid Type")

    class Frame:
        side_data = [  # noqa: RUF012
            Unknown(),
            Item("DOVI_RPU_BUFFER"),
            Item("CONTENT_LIGHT_LEVEL", np.array([800, 300], "=u4").tobytes()),
        ]

    meta = read_hdr(Frame())
    assert meta is not None and meta.dynamic == ("Dolby Vision",) and (meta.max_cll, meta.max_fall) == (800, 300)
    assert "max-cll=800,300" in meta.x265_params() and meta.svtav1_params() == ["content-light=800,300"]
    assert read_hdr(type("Plain", (), {"side_data": []})()) is None


def test_alpha_by_the_real_network_is_closer_to_the_truth_than_bicubic(tmp_path):
    """The default (the model on alpha as grey) against bicubic, on a logo's sharp edges drawn at 4x (the truth)."""
    from PIL import Image, ImageDraw, ImageFilter

    big = Image.new("L", (384, 256), 0)
    draw = ImageDraw.Draw(big)
    draw.ellipse((20, 20, 150, 236), fill=255)
    draw.polygon([(200, 236), (230, 236), (370, 20), (340, 20)], fill=255)
    truth = np.asarray(big).astype(np.float64)
    small = big.resize((96, 64), Image.Resampling.BOX)
    logo = Image.merge("RGBA", [Image.new("L", small.size, v) for v in (200, 60, 30)] + [small])
    logo.save(tmp_path / "logo.png")
    near = [np.asarray(mask.filter(ImageFilter.MaxFilter(7))) > 0 for mask in (big, big.point(lambda v: 255 - v))]
    edges = near[0] & near[1]  # within 3 px of both inside and outside
    errors = {}
    for method in ("network", "bicubic"):
        out = tmp_path / f"{method}.png"
        result = vsr_main("upscale", tmp_path / "logo.png", "-o", out, "--set", f"upscale.alpha={method}")
        assert result.returncode == 0, result.stderr
        alpha = np.asarray(Image.open(out))[..., 3].astype(np.float64)
        errors[method] = float(np.sqrt(((alpha - truth)[edges] ** 2).mean()))
    assert errors["network"] < 0.8 * errors["bicubic"], errors


def test_jpeg_quality_is_a_preset_option(tmp_path):
    from PIL import Image

    photo = Path(__file__).parent / "data" / "astronaut_192.png"
    sizes, errors = {}, {}
    reference = None
    for quality in (100, 95, 60):
        out = tmp_path / f"q{quality}.jpg"
        result = vsr_main("upscale", photo, "-o", out, *TINY, "--set", f"encode.quality={quality}")
        assert result.returncode == 0, result.stderr
        pixels = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
        reference = pixels if reference is None else reference
        sizes[quality], errors[quality] = out.stat().st_size, np.abs(pixels - reference).mean()
    assert sizes[100] > sizes[95] > sizes[60] and errors[60] > errors[95], (sizes, errors)
    bad = vsr_main("upscale", photo, "-o", tmp_path / "bad.jpg", *TINY, "--set", "encode.quality=0")
    assert bad.returncode == 2 and "quality" in bad.stderr
