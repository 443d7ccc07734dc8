"""What the ``pyav`` encoder writes with: its options, and how they are carried over to what an output holds.

The container a suffix names may not hold the preset's codec (WebM: VP9), a
source may have transparency (a codec and pixel format that keep it) or more
than 8 bits (10-bit x265, SVT-AV1), and HDR10's metadata goes into the
encoders that write it. The tables here say which encoder can do what.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import av
import av.error

from vsr import has_alpha

# Option names of the encoders whose rate control and speed we set by name.
CRF_OPTION = {"libx264": "crf", "libx265": "crf", "libsvtav1": "crf", "libaom-av1": "crf", "libvpx-vp9": "crf"}
SPEED_OPTION = {
    "libx264": "preset",
    "libx265": "preset",
    "libsvtav1": "preset",
    "libaom-av1": "cpu-used",
    "libvpx-vp9": "cpu-used",
}
#: What ``crf`` and ``speed`` may be, per encoder (checked before any model is built).
CRF_RANGE = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libsvtav1": (1, 63),
    "libaom-av1": (0, 63),
    "libvpx-vp9": (0, 63),
}
X26X_SPEEDS = "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo".split()
NUMERIC_SPEED = {"libsvtav1": (-2, 13), "libaom-av1": (0, 9), "libvpx-vp9": (-16, 16)}
#: x264's speed names in the numeric encoders' scales (None: the encoder's own default), so a preset's
#: ``speed = "veryfast"`` keeps its meaning when the codec is changed.
NAMED_SPEEDS = {
    "libsvtav1": dict(zip(X26X_SPEEDS, [12, 11, 10, 9, 8, None, 6, 5, 4, 2], strict=True)),
    "libvpx-vp9": dict(zip(X26X_SPEEDS, [5, 5, 5, 5, 4, 4, 3, 2, 1, 0], strict=True)),
    "libaom-av1": dict(zip(X26X_SPEEDS, [8, 8, 7, 6, 5, None, 3, 2, 1, 0], strict=True)),
}
TUNES = {
    "libx264": {"film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"},
    "libx265": {"psnr", "ssim", "grain", "zerolatency", "fastdecode", "animation"},
}
#: Encoder options a preset may pass on (``[encode] options``). A preset is a file people download and share: no
#: option that names a file or another output (stats, passlogfile, pass flags, format overrides) is allowed.
ALLOWED_OPTIONS = frozenset(
    "profile level qp b minrate maxrate bufsize g keyint_min bf refs sc_threshold aq-mode aq-strength psy psy-rd "
    "deblock rc-lookahead threads x264-params x265-params svtav1-params row-mt tile-columns tile-rows "
    "lag-in-frames deadline slices slicecrc coder context".split()
)
#: Keys of x264-params/x265-params/svtav1-params that read or write files.
_FILE_PARAMS = frozenset(
    "dump-yuv stats pass qpfile tcfile-in tcfile-out input-csv csv csv-log-level analysis-save analysis-load "
    "analysis-reuse-file recon zonefile dolby-vision-rpu hdr10-opt-file fgs-table stat-file input-stat-file "
    "output-stat-file pass1 pass2 passlogfile log-file".split()
)


def _option_problem(key: str, value: str) -> str | None:
    """Why an ``[encode] options`` entry is refused, or None."""
    if key not in ALLOWED_OPTIONS:
        allowed = ", ".join(sorted(ALLOWED_OPTIONS))
        return f"encoder option {key!r} is not allowed in presets (allowed: {allowed})"
    if key.endswith("-params"):
        for item in str(value).split(":"):
            name = item.partition("=")[0].strip().lower()
            if name in _FILE_PARAMS:
                return f"encoder option {key} may not carry {name!r}: it names a file"
    return None


@dataclass
class EncodeOptions:
    codec: str = "libx264"
    """Any FFmpeg encoder PyAV knows: libx264, libx265, libsvtav1, ..."""
    crf: int | None = 18
    """Constant-quality level (lower is better); none leaves the encoder's default."""
    speed: str | int | None = "medium"
    """Encoder speed preset (x264/x265 names; SVT-AV1, AV1 and VP9 numbers, where "medium" means the encoder's
    default); none for the default."""
    pix_fmt: str = "yuv420p"
    """Output pixel format; yuv420p10le for 10-bit."""
    tune: str | None = None
    """x264/x265 tune, e.g. animation, film, grain."""
    options: dict[str, str] = field(default_factory=dict)
    """Further encoder options (an allow-list: ALLOWED_OPTIONS; none that names a file), passed to FFmpeg."""
    copy_streams: bool = True
    """Copy audio, subtitle and attachment streams of the input unchanged."""
    alpha: Literal["auto", "keep", "drop"] = "auto"
    """A transparent source's alpha: "auto" keeps it where the output's codec holds it (VP9, ProRes 4444, FFV1,
    QuickTime Animation, PNG; PNG, TIFF and WebP stills), else warns that it is dropped; "keep" also picks a codec
    that holds it (VP9 in .webm/.mkv, ProRes 4444 in .mov) or refuses the run before any work; "drop": opaque."""
    quality: int = 95
    """JPEG and WebP stills: quality from 1 to 100 (100: the least loss; JPEG 95 is FFmpeg's qscale 2)."""

    def validate(self) -> str | None:
        try:
            codec = av.Codec(self.codec, "w")
        except (ValueError, av.error.FFmpegError):
            return f"unknown encoder {self.codec!r} (see `ffmpeg -encoders`)"
        if codec.type != "video":
            return f"{self.codec} is not a video encoder"
        try:
            av.VideoFormat(self.pix_fmt)
        except (ValueError, av.error.FFmpegError):
            return f"unknown pixel format {self.pix_fmt!r}"
        low, high = CRF_RANGE.get(self.codec, (0, 63))
        if self.crf is not None and not low <= self.crf <= high:
            return f"crf {self.crf} is outside {low}..{high} for {self.codec}"
        if self.codec in ("libx264", "libx265") and self.speed is not None and self.speed not in X26X_SPEEDS:
            return f"speed {self.speed!r} is not one of {self.codec}'s: {', '.join(X26X_SPEEDS)}"
        if self.codec in NUMERIC_SPEED and self.speed is not None and self.speed not in X26X_SPEEDS:
            low, high = NUMERIC_SPEED[self.codec]  # x264's names are translated (NAMED_SPEEDS)
            if type(self.speed) is not int or not low <= self.speed <= high:
                return f"speed for {self.codec} is a number from {low} to {high} or x264's name, not {self.speed!r}"
        if self.tune is not None and self.codec in TUNES and self.tune not in TUNES[self.codec]:
            return f"tune {self.tune!r} is not one of {self.codec}'s: {', '.join(sorted(TUNES[self.codec]))}"
        for key, value in self.options.items():
            if (problem := _option_problem(str(key), str(value))) is not None:
                return problem
        return None if 1 <= self.quality <= 100 else "quality must be from 1 to 100"


#: Still suffixes that hold animations too: an animation or a video written to them is an animated WebP or PNG.
ANIMATED_STILLS = (".webp", ".png")
#: Encoders that hold transparency, and the pixel format with alpha they get for it.
ALPHA_FORMATS = {
    "gif": "pal8",  # one palette entry is transparent (1-bit alpha, cut at half)
    "apng": "rgba",
    "libwebp_anim": "yuva420p",
    "libvpx-vp9": "yuva420p",
    "libvpx": "yuva420p",
    "prores_ks": "yuva444p10le",
    "ffv1": "yuva444p",
    "qtrle": "argb",
    "png": "rgba",
}
ALPHA_OPTIONS = {
    "prores_ks": {"profile": "4444"},
    # GIF: the encoder's own use of the transparent entry (for "unchanged since the last frame", and cropping to
    # what changed) would hide the picture's own transparency
    "gif": {"gifflags": "-offsetting-transdiff"},
}
#: The animated-picture encoders and the pixel format of an opaque picture (GIF's palette is made per frame).
ANIMATION_FORMATS = {"gif": "pal8", "apng": "rgb24", "libwebp_anim": "yuv420p"}
#: Their muxers' option for "loop for ever", as the players of stickers and animations expect.
LOOP_FOREVER = {"gif": {"loop": "0"}, "apng": {"plays": "0"}, "webp": {"loop": "0"}}
#: What ``alpha = "keep"`` encodes with, per container, where the preset's codec holds no alpha.
KEEP_ALPHA = {"webm": "libvpx-vp9", "matroska": "libvpx-vp9", "mov": "prores_ks"}
#: Encoders that write HDR10's static metadata into the stream, and the option that carries it.
HDR_PARAMS = {"libx265": "x265-params", "libsvtav1": "svtav1-params"}


#: RGB pixel formats and their 16-bit counterparts (APNG, PNG in MOV).
DEEPER = {"rgb24": "rgb48be", "rgba": "rgba64be"}


def keeps_alpha(opts: EncodeOptions) -> bool:
    """Whether ``opts`` write transparency: a pixel format with alpha, or GIF's transparent palette entry."""
    return has_alpha(opts.pix_fmt) or (opts.codec == "gif" and opts.alpha != "drop")


def pix_fmt_bits(pix_fmt: str) -> int:
    try:
        return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)
    except (ValueError, av.error.FFmpegError):
        return 8


def to_x265(opts: EncodeOptions) -> EncodeOptions:
    """x264 options carried over to x265: CRF 5 higher (x265's CRF 28 looks like x264's 23, at about half the
    size, says FFmpeg's H.265 guide), the same speed name, the tune where x265 has it; x264-params go."""
    crf = None if opts.crf is None else min(51, opts.crf + 5)
    tune = opts.tune if opts.tune in TUNES["libx265"] else None
    kept = {k: v for k, v in opts.options.items() if k != "x264-params"}
    return replace(opts, codec="libx265", crf=crf, tune=tune, options=kept)


def for_container_codec(opts: EncodeOptions, codec: str) -> EncodeOptions:
    """``opts`` carried over to ``codec`` (the codec a container holds where it cannot hold the preset's).

    Quality and speed keep their meaning: CRF on x264's scale maps to VP9's (18 -> 31, the level libvpx's
    own guide gives for visually lossless HD); x264/x265 tunes and params have no VP9 counterpart and go.
    """
    if codec == "prores_ks":  # no CRF or speed: the profile decides
        return replace(opts, codec=codec, crf=None, speed=None, tune=None, options={})
    if codec in ANIMATION_FORMATS:  # GIF, APNG, animated WebP: their own pixel format, no rate control
        return replace(opts, codec=codec, pix_fmt=ANIMATION_FORMATS[codec], crf=None, speed=None, tune=None, options={})
    if codec != "libvpx-vp9":
        return replace(opts, codec=codec, tune=None, options={})
    crf = None if opts.crf is None else max(0, min(63, round(opts.crf * 1.4 + 6)))
    speed = NAMED_SPEEDS[codec].get(str(opts.speed), 4)  # cpu-used 4-5 with row-mt: VP9 at a useful throughput
    kept = {k: v for k, v in opts.options.items() if not k.endswith("-params")}
    return replace(opts, codec=codec, crf=crf, speed=speed, tune=None, options={"row-mt": "1", "b": "0", **kept})
