"""vsr's built-in presets, registered as a plugin like any other."""

from __future__ import annotations

from pathlib import Path

from vsr.hookspecs import hookimpl
from vsr.registry import PresetRegister

PRESET_DIR = Path(__file__).parent


@hookimpl
def register_presets(register: PresetRegister) -> None:
    for path in sorted(PRESET_DIR.glob("*.toml")):
        register(path)
