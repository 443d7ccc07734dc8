"""vsr's built-in presets, registered as a plugin like any other."""

from __future__ import annotations

from pathlib import Path

from vsr import PresetRegister, hookimpl

PRESET_DIR = Path(__file__).parent


@hookimpl
def register_presets(register: PresetRegister) -> None:
    for path in sorted(PRESET_DIR.glob("*.toml")):
        register(path)
