"""Presets: TOML files that choose a stage for each role and set its options.

A preset looks like::

    description = "One line shown by `vsr presets`"

    [upscale]
    stage = "esrgan"          # which registered upscaler (default shown)
    model = "realesrgan-x4plus-anime"
    tile = 256

    [smooth]
    enabled = false           # optional roles can be switched off

    [encode]
    codec = "libx264"
    crf = 18

Every key other than ``stage`` and ``enabled`` is an option of the chosen
stage and is validated by it. ``--set section.key=value`` overrides a key;
the value is read as TOML (``--set upscale.tile=128``), falling back to a
plain string (``--set encode.codec=libx265``).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsr.errors import UsageError
from vsr.registry import Registry
from vsr.stage import ROLES

DEFAULT_STAGES = {"decode": "pyav", "upscale": "esrgan", "smooth": "temporal", "encode": "pyav"}
OPTIONAL_ROLES = {"smooth"}


@dataclass
class StageChoice:
    """The stage picked for one role, with its raw (not yet validated) options."""

    role: str
    stage: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preset:
    name: str
    description: str
    path: Path | None
    tables: dict[str, dict[str, Any]]

    def with_overrides(self, overrides: list[str]) -> Preset:
        """A copy with ``section.key=value`` overrides (``--set``) applied; each value is read as TOML."""
        parsed = []
        for item in overrides:
            key, sep, raw = item.partition("=")
            section, dot, option = key.strip().partition(".")
            if not sep or not dot or not section or not option:
                raise UsageError(f"--set expects section.key=value, got {item!r}")
            if section not in ROLES:
                raise UsageError(f"--set {item!r}: unknown section {section!r} (known: {', '.join(ROLES)})")
            parsed.append((section, option, parse_value(raw.strip())))
        return self.with_values(parsed)

    def with_values(self, values: list[tuple[str, str, Any]]) -> Preset:
        """A copy with typed ``(section, key, value)`` overrides applied.

        Options belong to a stage: choosing another stage for a role
        (``smooth.stage=mine``) drops the preset's options for the old one,
        keeping only ``enabled`` and the options given here.
        """
        tables = copy.deepcopy(self.tables)
        for section, option, value in sorted(values, key=lambda p: p[1] != "stage"):  # stage choices first
            if section not in ROLES:
                raise UsageError(f"unknown preset section {section!r} (known: {', '.join(ROLES)})")
            table = tables.setdefault(section, {})
            if option == "stage" and value != table.get("stage", DEFAULT_STAGES[section]):
                tables[section] = table = {k: v for k, v in table.items() if k == "enabled"}
            table[option] = value
        return Preset(self.name, self.description, self.path, tables)

    def choices(self) -> list[StageChoice]:
        """The enabled roles in pipeline order, with their stage and options."""
        return [choice for enabled, choice in self._choices() if enabled]

    def disabled(self) -> list[StageChoice]:
        """The roles switched off that still name a stage or options (checked all the same: a typo in
        ``[smooth]`` is caught before smoothing is switched on)."""
        return [choice for enabled, choice in self._choices() if not enabled and choice.stage]

    def _choices(self) -> list[tuple[bool, StageChoice]]:
        out = []
        for role in ROLES:
            table = dict(self.tables.get(role, {}))
            enabled = table.pop("enabled", role not in OPTIONAL_ROLES)
            if not isinstance(enabled, bool):
                raise UsageError(f"preset {self.name}: [{role}] enabled must be true or false")
            stage = table.pop("stage", DEFAULT_STAGES[role])
            if not isinstance(stage, str):
                raise UsageError(f"preset {self.name}: [{role}] stage must be a string")
            if enabled and not stage:
                raise UsageError(f"preset {self.name}: [{role}] is enabled but names no stage (set {role}.stage)")
            out.append((enabled, StageChoice(role, stage, table)))
        return out


def parse_value(raw: str) -> Any:
    """Read ``raw`` as a TOML value, or keep it as a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    except RecursionError:
        raise UsageError(f"value {raw[:40]!r}... is nested too deeply") from None


def read_preset(path: Path, name: str | None = None) -> Preset:
    """Load one preset file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"preset file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read preset {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"preset {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"preset {path} is nested too deeply to be a preset") from None
    description = data.pop("description", "")
    unknown = sorted(k for k in data if k not in ROLES or not isinstance(data[k], dict))
    if unknown:
        raise UsageError(
            f"preset {path}: unknown top-level key {', '.join(unknown)} (known: description, {', '.join(ROLES)})"
        )
    return Preset(name or path.stem, str(description), path, data)


def resolve_preset(registry: Registry, name_or_path: str) -> Preset:
    """A registered preset by name, or a preset file by path."""
    found = registry.presets.items.get(name_or_path)
    if found is not None:
        return read_preset(Path(str(found.value)), name_or_path)
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        return read_preset(Path(name_or_path))
    known = ", ".join(sorted(registry.presets.items)) or "none registered"
    raise UsageError(f"unknown preset {name_or_path!r} (known: {known}; or give a path to a .toml file)")
