"""Presets, --set overrides and typed stage options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pytest

from vsr.errors import UsageError
from vsr.options import parse_options
from vsr.pipeline import build_pipeline
from vsr.plan import make_plan
from vsr.plugins import load_registry
from vsr.presets import parse_value, resolve_preset
from vsr.stage import Job


@dataclass
class Opts:
    size: int = 1
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"
    name: str | None = None
    on: bool = False


def test_parse_options_types_and_errors():
    opts = parse_options(Opts, {"size": 3, "ratio": 1, "mode": "b", "name": "x", "on": True}, "test")
    assert (opts.size, opts.ratio, opts.mode, opts.name, opts.on) == (3, 1.0, "b", "x", True)
    with pytest.raises(UsageError, match=r"unknown option sise .*known options: mode, name, on, ratio, size"):
        parse_options(Opts, {"sise": 3}, "test")
    with pytest.raises(UsageError, match="option size for test must be int, got 'big'"):
        parse_options(Opts, {"size": "big"}, "test")
    with pytest.raises(UsageError, match=re.escape("must be 'a' | 'b', got 'c'")):
        parse_options(Opts, {"mode": "c"}, "test")
    with pytest.raises(UsageError):
        parse_options(Opts, {"on": 1}, "test")


def test_builtin_presets_are_registered_and_valid(sample_clip, tmp_path):
    registry = load_registry()
    assert {"default", "anime", "film", "fast"} <= set(registry.presets.items)
    models = {"anime": "realesrgan-x4plus-anime", "film": "realesrgan-x4plus", "fast": "realesr-animevideov3"}
    for name in registry.presets.items:
        preset = resolve_preset(registry, name)
        assert preset.description
        choices = {c.role: c for c in preset.choices()}
        smoothed = {"decode", "upscale", "smooth", "encode"}
        assert set(choices) == (smoothed if name in ("anime", "fast") else smoothed - {"smooth"})
        if name in models:
            assert choices["upscale"].options["model"] == models[name]
        job = Job(sample_clip, tmp_path / "x.mp4", tmp_path / "x.mp4", registry=registry)
        build_pipeline(make_plan(registry, preset), job).probe()  # every option validates


def test_set_overrides_are_typed():
    registry = load_registry()
    preset = resolve_preset(registry, "anime").with_overrides(
        ["upscale.tile=128", "encode.codec=libx265", "smooth.enabled=true", "smooth.stage=invert"]
    )
    assert preset.tables["upscale"]["tile"] == 128
    assert preset.tables["encode"]["codec"] == "libx265"
    assert [c.stage for c in preset.choices()] == ["pyav", "esrgan", "invert", "pyav"]
    # switching a role's stage drops the old stage's options, keeps --set ones whatever their order
    mine = resolve_preset(registry, "anime").with_overrides(["smooth.enabled=false", "smooth.strength=0.3"])
    switched = mine.with_overrides(["smooth.amount=0.5", "smooth.stage=invert"])
    assert switched.tables["smooth"] == {"enabled": False, "stage": "invert", "amount": 0.5}
    assert parse_value("1.5") == 1.5 and parse_value("true") is True and parse_value("abc") == "abc"
    with pytest.raises(UsageError, match="unknown section"):
        preset.with_overrides(["upscayle.tile=1"])


def test_unknown_preset_lists_known_ones():
    with pytest.raises(UsageError, match=r"unknown preset 'nope' .*anime.*default.*fast.*film"):
        resolve_preset(load_registry(), "nope")


def test_preset_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\n[upscale]\nmodel = "tiny-srvgg"\n')
    preset = resolve_preset(load_registry(), str(path))
    assert preset.name == "mine" and preset.tables["upscale"]["model"] == "tiny-srvgg"
    path.write_text("[upscale\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve_preset(load_registry(), str(path))


def test_a_typo_in_a_section_that_is_off_is_refused_all_the_same(sample_clip, tmp_path):
    """Smoothing is off in the default preset: a misspelt option for it must not wait until it is switched on."""
    from conftest import TINY, vsr_main

    result = vsr_main("upscale", sample_clip, "-o", tmp_path / "o.mp4", *TINY, "--set", "smooth.amout=1")
    assert result.returncode == 2 and "unknown option amout for smooth stage 'temporal'" in result.stderr
    assert list(tmp_path.iterdir()) == []
