"""``vsr models``: list, import, describe and remove models."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vsr.cli.listing import _print
from vsr.errors import UsageError
from vsr.plugins import load_registry

app = typer.Typer(
    help="List the models, import a .pth/.safetensors/ncnn model file, show or remove one.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _arch_summary(arch: str, config: dict[str, Any]) -> str:
    keys = ("num_block", "num_feat", "num_grow_ch") if arch == "rrdbnet" else ("num_conv", "num_feat")
    return f"{arch} " + " ".join(f"{k.removeprefix('num_')}={config[k]}" for k in keys if k in config)


@app.callback()
def models(ctx: typer.Context) -> None:
    """List every model: name, architecture, scale, source, licence, and whether its weights are converted."""
    if ctx.invoked_subcommand is not None:
        return
    from vsr.models.store import cached_entry

    registry = load_registry()
    table = Table("model", "architecture", "scale", "source", "converted", "licence", "description", box=None)
    for name, item in sorted(registry.models.items.items()):
        spec = item.value
        entry = cached_entry(name)
        arch = _arch_summary(spec.arch, entry["config"]) if entry else spec.arch
        origin = spec.origin or "plugin"
        table.add_row(
            name,
            arch,
            f"x{spec.scale}",
            f"{item.plugin}: {origin}" if item.plugin != "imported" else origin,
            "yes" if entry else "no",
            spec.licence,
            spec.description,
        )
    _print(table)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .pth/.pt/.ckpt, .safetensors, or ncnn .param (with its .bin).")],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name in the registry (default: from the file).")
    ] = None,
    description: Annotated[str, typer.Option(help="One line for `vsr models`.")] = "",
    licence: Annotated[str, typer.Option(help="The weights' licence, if you know it.")] = "",
    replace: Annotated[bool, typer.Option("--replace", help="Replace an earlier import of the same name.")] = False,
) -> None:
    """Convert a model file (no PyTorch needed, no code from the file run) into the model store."""
    from vsr.models.store import import_model

    registry = load_registry()
    taken = {n for n, item in registry.models.items.items() if item.plugin != "imported"}
    start = time.perf_counter()
    sidecar = import_model(file, name, taken=taken, replace=replace, description=description, licence=licence)
    print(
        f"imported {sidecar['name']}: {_arch_summary(sidecar['arch'], sidecar['config'])}, x{sidecar['scale']}, "
        f"{sidecar['parameters']:,} parameters, from {sidecar['source_format']} in {time.perf_counter() - start:.2f} s"
    )
    print(f"use it with: vsr upscale VIDEO --model {sidecar['name']}")


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="A model name from `vsr models`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the store's record as JSON.")] = False,
) -> None:
    """Show a model's architecture, scale, source and checksums."""
    from vsr.models.store import cached_entry

    registry = load_registry()
    spec = registry.model(name)
    entry = cached_entry(name) or {}
    record: dict[str, Any] = {
        "name": name,
        "arch": spec.arch,
        "scale": spec.scale,
        "description": spec.description,
        "licence": spec.licence,
        "plugin": registry.models.items[name].plugin,
        "source": spec.origin,
        "converted": bool(entry),
        **{k: v for k, v in entry.items() if k not in ("format", "name", "arch", "scale")},
    }
    if as_json:
        print(json.dumps(record, indent=2))
        return
    for key, value in record.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:>16}: {value}")


@app.command()
def remove(name: Annotated[str, typer.Argument(help="An imported model's name.")]) -> None:
    """Delete an imported model from the store (built-in models cannot be removed)."""
    from vsr.models.store import remove_model

    item = load_registry().models.items.get(name)
    if item is not None and item.plugin != "imported":
        raise UsageError(f"model {name!r} comes with {item.plugin}, not from an import; it cannot be removed")
    remove_model(name)
    print(f"removed {name}")
