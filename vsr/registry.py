"""Typed registries that plugins fill through the hooks in :mod:`vsr.hookspecs`.

One register per kind of thing (tox's ``ToxEnvRegister`` is the model):
generic over what it holds, so whoever reads it back gets a typed value, and
it refuses misuse (a wrong type, an empty or taken name) with a line naming
the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from vsr.errors import UsageError
from vsr.stage import ROLES, Stage

if TYPE_CHECKING:
    from vsr.engine import Engine
    from vsr.models.registry import ModelSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """Something a plugin registered, and which plugin it came from."""

    value: T
    plugin: str


class Register(Generic[T]):
    """What plugins registered of one kind, by name; the hook's ``register`` callable."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, Registered[T]] = {}
        self.plugin = "?"

    def _add(self, name: str, value: T) -> None:
        if not name:
            raise ValueError(f"plugin {self.plugin}: a {self.kind} needs a non-empty name")
        if name in self.items:
            raise ValueError(
                f"{self.kind} {name!r} is registered by two plugins, {self.items[name].plugin} and {self.plugin}: "
                "rename one, or block one with VSR_DISABLE_PLUGINS"
            )
        self.items[name] = Registered(value, self.plugin)

    def get(self, name: str) -> T:
        """The value registered as ``name``, or a usage error listing the known names."""
        found = self.items.get(name)
        if found is None:
            known = ", ".join(sorted(self.items)) or "none registered"
            raise UsageError(f"unknown {self.kind} {name!r} (known: {known})")
        return found.value

    def values(self) -> dict[str, T]:
        """Every registered value, by name."""
        return {name: found.value for name, found in self.items.items()}


class StageRegister(Register[type[Stage]]):
    """``register(StageClass)``: adds a stage class for one role."""

    def __call__(self, stage: type[Stage]) -> None:
        if not (isinstance(stage, type) and issubclass(stage, Stage)):
            raise TypeError(f"plugin {self.plugin}: register() takes a vsr.Stage subclass, got {stage!r}")
        self._add(stage.name, stage)


class EngineRegister(Register["type[Engine]"]):
    """``register(EngineClass)``: adds an inference engine the ``esrgan`` upscaler may run its network on."""

    def __call__(self, engine: type[Engine]) -> None:
        from vsr.engine import Engine

        if not (isinstance(engine, type) and issubclass(engine, Engine)):
            raise TypeError(f"plugin {self.plugin}: register() takes a vsr.Engine subclass, got {engine!r}")
        self._add(engine.name, engine)


class ModelRegister(Register["ModelSpec"]):
    """``register(ModelSpec)``: adds a named model."""

    def __call__(self, spec: ModelSpec) -> None:
        self._add(spec.name, spec)


class PresetRegister(Register[Path]):
    """``register(path)``: adds a preset TOML file, named after its stem."""

    def __call__(self, path: Path | str) -> None:
        path = Path(path)
        self._add(path.stem, path)


@dataclass
class Registry:
    """All stages, engines, models and presets that the loaded plugins provide."""

    stages: dict[str, StageRegister] = field(
        default_factory=lambda: {role: StageRegister(f"{role} stage") for role in ROLES}
    )
    engines: EngineRegister = field(default_factory=lambda: EngineRegister("upscaler engine"))
    models: ModelRegister = field(default_factory=lambda: ModelRegister("model"))
    presets: PresetRegister = field(default_factory=lambda: PresetRegister("preset"))

    def stage(self, role: str, name: str) -> type[Stage]:
        """The stage class registered as ``name`` for ``role``, or a clear error."""
        return self.stages[role].get(name)

    def model(self, name: str) -> ModelSpec:
        return self.models.get(name)
