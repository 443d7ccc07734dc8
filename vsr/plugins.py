"""Build the plugin manager and collect what plugins register.

Built-in stages, models and presets are ordinary plugins listed in the
``vsr`` entry-point group of vsr's own ``pyproject.toml``, loaded the same
way as third-party ones. ``VSR_DISABLE_PLUGINS`` (comma-separated entry-point
names) blocks plugins, for example a broken third-party one. ``VSR_PLUGINS``
(comma-separated importable module names) loads plugins that are not
installed as packages, for trying one out or for tests.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

import pluggy

from vsr import hookspecs
from vsr.errors import VsrError
from vsr.registry import Register, Registry

ENTRY_POINT_GROUP = "vsr"


def get_plugin_manager(extra_plugins: Iterable[object] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the entry-point plugins and ``extra_plugins``."""
    pm = pluggy.PluginManager("vsr")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        for name in filter(None, os.environ.get("VSR_DISABLE_PLUGINS", "").split(",")):
            pm.set_blocked(name.strip())
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must not look like our bug
            raise VsrError(f"a vsr plugin failed to load: {exc} (block it with VSR_DISABLE_PLUGINS=name)") from exc
        for module_name in filter(None, (m.strip() for m in os.environ.get("VSR_PLUGINS", "").split(","))):
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # its import failed: the plugin's fault, not vsr's
                raise VsrError(f"cannot load plugin {module_name!r} from VSR_PLUGINS: {_reason(exc)}") from None
            _register(pm, module, module_name)
    for plugin in extra_plugins:
        _register(pm, plugin, None)
    try:
        pm.check_pending()  # a hookimpl whose name is no hook: a misspelt one fails loudly
    except pluggy.PluginValidationError as exc:
        raise VsrError(f"plugin {_label(pm, exc.plugin)}: {_reason(exc)} (known hooks: {_hooks()})") from None
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise VsrError(f"plugin {name or _label(pm, plugin)}: {_reason(exc)} (known hooks: {_hooks()})") from None


def _hooks() -> str:
    return ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))


def _reason(exc: BaseException) -> str:
    """An exception as one line: pluggy's messages hold newlines and repeat the plugin's repr."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(" in plugin <", 1)[0]
    return text if isinstance(exc, pluggy.PluginValidationError) else f"{type(exc).__name__}: {text}"


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook once and return what was registered."""
    registry = Registry()
    hooks: list[tuple[str, Register[Any]]] = [
        ("register_decoders", registry.stages["decode"]),
        ("register_upscalers", registry.stages["upscale"]),
        ("register_engines", registry.engines),
        ("register_smoothers", registry.stages["smooth"]),
        ("register_encoders", registry.stages["encode"]),
        ("register_models", registry.models),
        ("register_presets", registry.presets),
    ]
    for hook_name, register in hooks:
        caller = getattr(pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's call order (tryfirst/trylast respected)
            register.plugin = _label(pm, impl.plugin)
            try:
                impl.function(register=register)
            except (TypeError, ValueError) as exc:  # the register refused: its message names the plugin
                raise VsrError(str(exc)) from exc
            except Exception as exc:  # the plugin's own hook failed: name it, not vsr
                raise VsrError(f"plugin {register.plugin}: {hook_name} failed: {_reason(exc)}") from exc
    return registry


def _label(pm: pluggy.PluginManager, plugin: object) -> str:
    """The plugin's registered name, or its class name for an unnamed plugin object."""
    name = pm.get_name(plugin) or ""
    if not name or name.isdigit():  # pluggy names unnamed plugins by id()
        name = getattr(plugin, "__name__", type(plugin).__name__)
    return name


def load_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """The registry of every installed plugin plus ``extra_plugins``."""
    return collect(get_plugin_manager(extra_plugins))
