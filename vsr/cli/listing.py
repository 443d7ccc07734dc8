"""``vsr stages`` and ``vsr presets``: what the installed plugins provide."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from vsr.options import describe_options
from vsr.plugins import load_registry
from vsr.presets import resolve_preset
from vsr.stage import ROLES


def _print(table: Table) -> None:
    Console(soft_wrap=False, width=200 if not Console().is_terminal else None).print(table)


def stages() -> None:
    """List every registered stage, the plugin it came from, and its options."""
    registry = load_registry()
    table = Table("role", "stage", "plugin", "options", "description", box=None)
    for role in ROLES:
        for name, item in sorted(registry.stages[role].items.items()):
            cls = item.value
            opts = ", ".join(f"{n}={d!r}" for n, _, d in describe_options(cls.Options))
            table.add_row(role, name, item.plugin, opts or "-", cls.description)
    for name, found in sorted(registry.engines.items.items()):
        engine = found.value
        missing = engine.missing()
        note = f" (cannot run here: {missing})" if missing else ""
        table.add_row("engine", name, found.plugin, "-", engine.description + note)
    _print(table)


def presets() -> None:
    """List the presets with a one-line description."""
    registry = load_registry()
    table = Table("preset", "plugin", "description", box=None)
    for name, item in sorted(registry.presets.items.items()):
        table.add_row(name, item.plugin, resolve_preset(registry, name).description)
    _print(table)
