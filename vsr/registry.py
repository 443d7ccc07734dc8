"""Typed registries that plugins fill through the hooks in :mod:`vsr.hookspecs`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vsr.errors import UsageError
from vsr.stage import ROLES, Stage

if TYPE_CHECKING:
    from vsr.engine import Engine
    from vsr.models.registry import ModelSpec


@dataclass(frozen=True)
class Registered:
    """Something a plugin registered, and which plugin it came from."""

    value: object
    plugin: str


class _Register:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, Registered] = {}
        self.plugin = "?"

    def _add(self, name: str, value: object) -> None:
        if not name:
            raise ValueError(f"plugin {self.plugin}: a {self.kind} needs a non-empty name")
        if name in self.items:
            raise ValueError(
                f"plugin {self.plugin}: {self.kind} {name!r} is already registered by {self.items[name].plugin}"
            )
        self.items[name] = Registered(value, self.plugin)


class StageRegister(_Register):
    """``register(StageClass)``: adds a stage class for one role."""

    def __call__(self, stage: type[Stage]) -> None:
        if not (isinstance(stage, type) and issubclass(stage, Stage)):
            raise TypeError(f"plugin {self.plugin}: register() takes a vsr.stage.Stage subclass, got {stage!r}")
        self._add(stage.name, stage)


class UpscalerRegister(StageRegister):
    """``register(StageClass)`` adds an upscaler stage; ``register(EngineClass)`` an inference engine.

    Engines (:class:`vsr.engine.Engine` subclasses) run the built-in ESRGAN
    upscaler's networks; ``engine = "NAME"`` in its options picks one. They
    share the upscalers' hook because they are upscalers' back ends: a
    plugin adds a runtime without touching vsr's core or the stage.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.engines = _Register("upscaler engine")

    def __call__(self, stage: type[Stage]) -> None:
        from vsr.engine import Engine

        if isinstance(stage, type) and issubclass(stage, Engine):
            self.engines.plugin = self.plugin
            self.engines._add(stage.name, stage)
            return
        super().__call__(stage)


class ModelRegister(_Register):
    """``register(ModelSpec)``: adds a named model."""

    def __call__(self, spec: ModelSpec) -> None:
        self._add(spec.name, spec)


class PresetRegister(_Register):
    """``register(path)``: adds a preset TOML file, named after its stem."""

    def __call__(self, path: Path | str) -> None:
        path = Path(path)
        self._add(path.stem, path)


def _stage_registers() -> dict[str, StageRegister]:
    return {role: (UpscalerRegister if role == "upscale" else StageRegister)(f"{role} stage") for role in ROLES}


@dataclass
class Registry:
    """All stages, models and presets that the loaded plugins provide."""

    stages: dict[str, StageRegister] = field(default_factory=_stage_registers)
    models: ModelRegister = field(default_factory=lambda: ModelRegister("model"))
    presets: PresetRegister = field(default_factory=lambda: PresetRegister("preset"))

    def stage(self, role: str, name: str) -> type[Stage]:
        """The stage class registered as ``name`` for ``role``, or a clear error."""
        found = self.stages[role].items.get(name)
        if found is None:
            known = ", ".join(sorted(self.stages[role].items)) or "none registered"
            raise UsageError(f"unknown {role} stage {name!r} (known: {known})")
        return found.value  # type: ignore[return-value]

    def engine_entries(self) -> dict[str, Registered]:
        """The upscaler engines plugins registered, by name, with the plugin each came from."""
        register = self.stages["upscale"]
        return dict(register.engines.items) if isinstance(register, UpscalerRegister) else {}

    def engines(self) -> dict[str, type[Engine]]:
        """The upscaler engine classes plugins registered, by name."""
        return {name: found.value for name, found in self.engine_entries().items()}  # type: ignore[misc]

    def model(self, name: str) -> ModelSpec:
        found = self.models.items.get(name)
        if found is None:
            known = ", ".join(sorted(self.models.items)) or "none registered"
            raise UsageError(f"unknown model {name!r} (known: {known})")
        return found.value  # type: ignore[return-value]
