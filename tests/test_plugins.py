"""The plugin API: built-ins and third-party plugins register the same way."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, decode_rgb, run_vsr
from vsr import hookimpl, hookspecs
from vsr.errors import VsrError
from vsr.frame import Frame
from vsr.plan import make_plan, plan_run
from vsr.plugins import get_plugin_manager, load_registry
from vsr.presets import resolve_preset
from vsr.running import upscale_file
from vsr.stage import Stage


def test_every_hook_has_a_docstring():
    names = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert set(names) == {
        "register_decoders",
        "register_upscalers",
        "register_engines",
        "register_smoothers",
        "register_encoders",
        "register_models",
        "register_presets",
    }
    for name in names:
        assert "Args:" in getattr(hookspecs, name).__doc__


def test_builtins_come_from_entry_points():
    registry = load_registry()
    assert registry.stages["decode"].items["pyav"].plugin == "decode"
    assert registry.stages["upscale"].items["esrgan"].plugin == "upscale"
    assert registry.stages["encode"].items["pyav"].plugin == "encode"
    assert registry.models.items["realesrgan-x4plus-anime"].plugin == "realesrgan"
    assert registry.presets.items["anime"].plugin == "presets"


class Halve(Stage):
    name = "halve"
    description = "darkens frames"

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        for frame in frames:
            yield frame.with_pixels(frame.pixels // 2)


class HalvePlugin:
    @hookimpl
    def register_smoothers(self, register):
        register(Halve)


def test_plugin_object_stage_runs_in_pipeline(sample_clip, tmp_path):
    registry = load_registry([HalvePlugin()])
    assert registry.stages["smooth"].items["halve"].plugin == "HalvePlugin"
    overrides = ["upscale.model=tiny-srvgg", "smooth.enabled=true", "smooth.stage=halve", "encode.speed=ultrafast"]
    result = upscale_file(plan_run(registry, "default", overrides=overrides), sample_clip, tmp_path / "half.mp4")
    plain = upscale_file(
        plan_run(registry, "default", overrides=["upscale.model=tiny-srvgg", "encode.speed=ultrafast"]),
        sample_clip,
        tmp_path / "plain.mp4",
    )
    assert result.frames == plain.frames == 12
    half, full = decode_rgb(result.output), decode_rgb(plain.output)
    assert abs(float(np.mean(half[5])) - float(np.mean(full[5])) / 2) < 4


def test_duplicate_stage_names_are_refused():
    class Again:
        @hookimpl
        def register_decoders(self, register):
            from stages.decode import PyAVDecoder

            register(PyAVDecoder)

    with pytest.raises(VsrError, match=r"decode stage 'pyav' is registered by two plugins, (Again|decode) and"):
        load_registry([Again()])


def test_unknown_hook_name_fails_loudly():
    class Misspelt:
        @hookimpl
        def register_decoder(self, register):  # missing "s"
            pass

    with pytest.raises(Exception, match="unknown hook"):
        get_plugin_manager([Misspelt()])


def test_third_party_module_plugin_through_cli(sample_clip, tmp_path):
    listing = run_vsr("stages")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if " invert " in line)
    assert "smooth" in row and "vsr_tiny" in row
    out = tmp_path / "inv.mp4"
    done = run_vsr(
        "upscale",
        str(sample_clip),
        "-o",
        str(out),
        *TINY,
        "--set",
        "smooth.enabled=true",
        "--set",
        "smooth.stage=invert",
    )
    assert done.returncode == 0, done.stderr
    assert len(decode_rgb(out)) == 12


def test_unknown_stage_names_known_ones(sample_clip, tmp_path):
    registry = load_registry()
    preset = resolve_preset(registry, "default").with_overrides(["smooth.enabled=true", "smooth.stage=nope"])
    with pytest.raises(VsrError, match=r"unknown smooth stage 'nope' .*known: invert"):
        make_plan(registry, preset)


def test_the_plugin_api_is_importable_without_tensorflow():
    code = (
        "import sys\n"
        "from vsr import hookimpl, Stage, Frame, Job, MediaInfo, Engine, VsrError\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_built_in_stages_and_the_test_plugin_import_only_the_plugin_api():
    """vsr's own plugins prove the API: they import what `vsr` exports, never a module inside it."""
    import vsr

    root = Path(__file__).parent.parent
    files = [
        *sorted((root / "stages").glob("*.py")),
        root / "presets" / "__init__.py",
        root / "tests/plugins/vsr_tiny.py",
    ]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("vsr") for a in node.names), f"{path.name}: import vsr.*"
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vsr":
                assert node.module == "vsr", f"{path.name}:{node.lineno} imports from {node.module}"
                unknown = {a.name for a in node.names} - set(vsr.__all__)
                assert not unknown, f"{path.name}:{node.lineno} imports {unknown}, not in vsr's API"


def test_registers_refuse_misuse_naming_the_plugin():
    from vsr.registry import EngineRegister, StageRegister

    register = EngineRegister("upscaler engine")
    register.plugin = "mine"
    with pytest.raises(TypeError, match=r"plugin mine: register\(\) takes a vsr\.Engine subclass"):
        register(Stage)  # type: ignore[arg-type]
    stages = StageRegister("smooth stage")
    stages.plugin = "mine"
    with pytest.raises(TypeError, match=r"vsr\.Stage subclass"):
        stages(object)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("undefined_name\n", "cannot load plugin 'broken' from VSR_PLUGINS: NameError"),
        ("from vsr import hookimpl\n@hookimpl\ndef register_smoothers(register):\n    raise RuntimeError('boom')\n",
         "plugin broken: register_smoothers failed: RuntimeError: boom"),
        ("from vsr import hookimpl\n@hookimpl\ndef register_smoother(register):\n    pass\n",
         "plugin broken: unknown hook 'register_smoother' (known hooks: register_decoders"),
        ("from vsr import hookimpl\n@hookimpl\ndef register_smoothers(register):\n    register(int)\n",
         "plugin broken: register() takes a vsr.Stage subclass"),
    ],
)  # fmt: skip
def test_a_broken_plugin_is_one_line_naming_it(tmp_path, monkeypatch, source, needle):
    """A third-party plugin's mistakes must not read as vsr's own internal errors."""
    name = f"broken_{tmp_path.name}"  # a module name of its own: the test process imports each once
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VSR_PLUGINS", name)
    needle = needle.replace("broken", name)
    result = run_vsr("stages")
    assert result.returncode == 1 and needle in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
