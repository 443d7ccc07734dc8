"""Build the plugin manager and collect what plugins register.

Built-in stages, models and presets are ordinary plugins listed in the
``vsr`` entry-point group of vsr's own ``pyproject.toml``, loaded the same
way as third-party ones. ``VSR_DISABLE_PLUGINS`` (comma-separated entry-point
names) blocks plugins, for example a broken third-party one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pluggy

from vsr import hookspecs
from vsr.errors import VsrError
from vsr.registry import Registry

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
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook once and return what was registered."""
    registry = Registry()
    hooks = [
        ("register_decoders", registry.stages["decode"]),
        ("register_upscalers", registry.stages["upscale"]),
        ("register_smoothers", registry.stages["smooth"]),
        ("register_encoders", registry.stages["encode"]),
        ("register_models", registry.models),
        ("register_presets", registry.presets),
    ]
    for hook_name, register in hooks:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            register.plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                impl.function(register=register)
            except (TypeError, ValueError) as exc:
                raise VsrError(f"plugin {register.plugin}: {exc}") from exc
    return registry


def load_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """The registry of every installed plugin plus ``extra_plugins``."""
    return collect(get_plugin_manager(extra_plugins))
