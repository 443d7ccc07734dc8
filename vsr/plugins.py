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
                pm.register(importlib.import_module(module_name), name=module_name)
            except ImportError as exc:
                raise VsrError(f"cannot load plugin {module_name!r} from VSR_PLUGINS: {exc}") from None
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


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
            except (TypeError, ValueError) as exc:
                raise VsrError(f"plugin {register.plugin}: {exc}") from exc
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
