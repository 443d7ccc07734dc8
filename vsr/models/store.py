"""The model store: converted weights, cached on disk and verified on every load.

Layout of the store (``$VSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vsr``, else
``~/.cache/vsr``)::

    models/<name>.npz    weights by Keras layer name ("<layer>/<i>")
    models/<name>.json   sidecar: arch, config, scale, SHA-256 of the sources
                         and of the .npz, conversion date, vsr version

Two kinds of entries share it:

- **cached conversions** of registered models (the built-in Real-ESRGAN
  weights, plugins' models): used only while the sources still hash to what
  the sidecar says; otherwise converted again.
- **imported models** (``vsr models import FILE``, or ``--model PATH``, which
  imports under ``file-<content hash>``): the sidecar says ``"imported":
  true`` and records the source file's path and SHA-256; the entry stands on
  its own, so the source file may be moved or deleted afterwards.

Every load checks the ``.npz`` against its recorded SHA-256. Writes go to a
temporary file renamed into place (weights first, then the sidecar that makes
the entry visible).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from vsr.errors import UsageError, VsrError
from vsr.files import write_atomic
from vsr.models.converted import ConvertedModel
from vsr.models.registry import ModelSpec
from vsr.registry import Registry

FORMAT_VERSION = 1
log = logging.getLogger("vsr")


def cache_dir() -> Path:
    """Root of vsr's cache."""
    if env := os.environ.get("VSR_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vsr"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pack(weights: dict[str, list[np.ndarray]]) -> bytes:
    arrays = {f"{layer}/{i}": w for layer, ws in weights.items() for i, w in enumerate(ws)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[str, list[np.ndarray]]:
    weights: dict[str, list[tuple[int, np.ndarray]]] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            layer, _, index = key.rpartition("/")
            weights.setdefault(layer, []).append((int(index), npz[key]))
    return {layer: [w for _, w in sorted(items)] for layer, items in weights.items()}


def models_dir() -> Path:
    return cache_dir() / "models"


def _sidecar(name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((models_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT_VERSION else None


def _write_entry(name: str, converted: ConvertedModel, extra: dict[str, Any]) -> dict[str, Any]:
    from vsr import __version__

    data = _pack(converted.weights)
    sidecar = {
        "format": FORMAT_VERSION,
        "name": name,
        "arch": converted.arch,
        "config": converted.config,
        "scale": converted.scale,
        "parameters": converted.parameters,
        **extra,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "converted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "vsr_version": __version__,
    }
    root = models_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(root / f"{name}.npz", data)
        write_atomic(root / f"{name}.json", json.dumps(sidecar, indent=2).encode())
    except OSError as exc:
        raise VsrError(f"cannot write the model store in {root}: {exc.strerror or exc} (set VSR_CACHE_DIR)") from None
    return sidecar


def load_converted(spec: ModelSpec) -> tuple[ConvertedModel, bool]:
    """The converted model for ``spec``, from the cache when valid.

    Returns:
        The model and whether it came from the cache.
    """
    source_hashes = _source_hashes(spec)
    sidecar = _sidecar(spec.name)
    try:
        if sidecar is not None and sidecar.get("sources") == source_hashes:
            data = (models_dir() / f"{spec.name}.npz").read_bytes()
            if hashlib.sha256(data).hexdigest() == sidecar.get("weights_sha256"):
                return ConvertedModel(sidecar["arch"], sidecar["config"], _unpack(data)), True
    except (OSError, ValueError, KeyError):
        pass  # no cache, or a damaged one: convert again
    converted = spec.convert()
    _write_entry(spec.name, converted, {"sources": source_hashes, "source_paths": [str(p) for p in spec.sources]})
    return converted, False


def _source_hashes(spec: ModelSpec) -> dict[str, str]:
    for source in spec.sources:
        if not source.is_file():
            raise VsrError(f"model {spec.name}: weight file {source} is missing (reinstall its package)")
    return {p.name: sha256_file(p) for p in spec.sources}


def weights_digest(spec: ModelSpec) -> str:
    """SHA-256 of the converted weights ``spec`` runs with, as the store records it (converting on first use).

    It changes whenever the weights do: a re-import or retraining under the
    same name, a new file behind the same path, an updated weights package.
    """
    sidecar = _sidecar(spec.name)
    if (
        sidecar is None
        or not (models_dir() / f"{spec.name}.npz").is_file()
        or sidecar.get("sources") != _source_hashes(spec)
    ):
        load_converted(spec)
        sidecar = _sidecar(spec.name)
    digest = sidecar.get("weights_sha256") if sidecar is not None else None
    if not isinstance(digest, str):
        raise VsrError(f"model {spec.name}: the model store in {models_dir()} has no digest of its weights")
    return digest


NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._+-]{0,63}")


def default_name(path: Path) -> str:
    """``4x_Foolhardy_Remacri.pth`` -> ``4x_foolhardy_remacri``."""
    stem = path.name.split(".")[0] if path.suffix.lower() != ".safetensors" else path.stem
    return re.sub(r"[^a-z0-9._+-]+", "-", stem.lower()).strip("-._+")[:64] or "model"


def source_digest(path: Path) -> str:
    """SHA-256 of a model file (for ncnn, of its ``.param`` and ``.bin`` together)."""
    if path.suffix.lower() in (".param", ".bin"):
        from vsr.models.checkpoint import ncnn_pair

        parts = [sha256_file(p) for p in ncnn_pair(path)]
        return hashlib.sha256("".join(parts).encode()).hexdigest()
    return sha256_file(path)


def _check_source(path: Path) -> None:
    if not path.exists():
        raise VsrError(f"{path}: no such model file")
    if not path.is_file():
        raise VsrError(f"{path}: not a file")


def import_model(
    path: Path,
    name: str | None = None,
    *,
    taken: set[str] | frozenset[str] = frozenset(),
    replace: bool = False,
    description: str = "",
    licence: str = "",
) -> dict[str, Any]:
    """Convert a model file into the store under ``name``; returns its sidecar.

    Args:
        path: a ``.pth``/``.pt``/``.ckpt``, ``.safetensors`` or ncnn ``.param`` file.
        name: store name; default from the file name (see :func:`default_name`).
        taken: names other plugins already registered, which an import may not shadow.
        replace: replace an earlier import of the same name.
        description, licence: free text shown by ``vsr models``.
    """
    from vsr.models.checkpoint import convert_file

    name = name or default_name(path)
    check_name(name, taken, replace)
    _check_source(path)
    digest = source_digest(path)
    converted, source_format = convert_file(path)
    return save_model(
        name,
        converted,
        source_file=str(path.resolve()),
        source_sha256=digest,
        source_format=source_format,
        description=description or f"imported from {path.name}",
        licence=licence,
    )


def check_name(name: str, taken: set[str] | frozenset[str] = frozenset(), replace: bool = False) -> None:
    """Refuse a store name that is malformed, a plugin's, or (without ``replace``) already imported."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"invalid model name {name!r}: use lower-case letters, digits and . _ + - (64 at most)")
    if name in taken:
        raise UsageError(f"model {name!r} is already provided by vsr or a plugin; choose another --name")
    existing = _sidecar(name)
    if existing is not None and not replace:
        raise UsageError(f"model {name!r} is already imported (from {existing.get('source_file')}); use --replace")


def save_model(
    name: str,
    converted: ConvertedModel,
    *,
    source_file: str,
    source_format: str,
    description: str,
    source_sha256: str = "",
    licence: str = "",
) -> dict[str, Any]:
    """Put a converted (imported or trained) model into the store; returns its sidecar."""
    return _write_entry(
        name,
        converted,
        {
            "imported": True,
            "source_file": source_file,
            "source_sha256": source_sha256,
            "source_format": source_format,
            "description": description,
            "licence": licence or "unknown (user file)",
            "sources": {},
            "source_paths": [],
        },
    )


def imported_models() -> list[dict[str, Any]]:
    """Sidecars of every imported model in the store, by name."""
    found = []
    for path in sorted(models_dir().glob("*.json")) if models_dir().is_dir() else []:
        sidecar = _sidecar(path.stem)
        if sidecar is not None and sidecar.get("imported") and sidecar.get("name") == path.stem:
            found.append(sidecar)
    return found


def imported_spec(sidecar: dict[str, Any]) -> ModelSpec:
    """The registry entry of an imported model."""
    name, source = sidecar["name"], sidecar.get("source_file", "?")

    def damaged() -> ConvertedModel:
        raise VsrError(f"imported model {name}: its weights in {models_dir()} are damaged; import {source} again")

    return ModelSpec(
        name=name,
        arch=sidecar["arch"],
        scale=int(sidecar.get("scale", 4)),
        description=sidecar.get("description", ""),
        licence=sidecar.get("licence", ""),
        sources=(),
        convert=damaged,
        origin=f"imported ({sidecar.get('source_format', '?')})",
    )


def model_for_path(path: Path) -> ModelSpec:
    """A model file used directly (``--model PATH``): imported once, keyed by its content hash."""
    _check_source(path)
    name = f"file-{source_digest(path)[:16]}"
    sidecar = _sidecar(name)
    if sidecar is None or not (models_dir() / f"{name}.npz").is_file():
        sidecar = import_model(path, name, replace=True, description=f"{path.name}, used by path")
        log.info("imported %s into the model store as %s", path, name)
    return imported_spec(sidecar)


def resolve_model(registry: Registry, value: str) -> ModelSpec:
    """A registered model by name, or a model file by path (imported on first use)."""
    from vsr.models.checkpoint import MODEL_SUFFIXES

    if value in registry.models.items:
        return registry.model(value)
    path = Path(value).expanduser()
    if path.suffix.lower() in MODEL_SUFFIXES or "/" in value or os.sep in value:
        return model_for_path(path)
    return registry.model(value)  # the unknown-name error, listing the known ones


def remove_model(name: str) -> None:
    """Delete an imported model from the store."""
    sidecar = _sidecar(name)
    if sidecar is None or not sidecar.get("imported"):
        raise UsageError(f"no imported model named {name!r} (see `vsr models`)")
    for suffix in (".json", ".npz"):  # the sidecar first: a half-removed entry is invisible
        (models_dir() / f"{name}{suffix}").unlink(missing_ok=True)


def cached_entry(name: str) -> dict[str, Any] | None:
    """The sidecar of ``name`` if its converted weights are in the store."""
    sidecar = _sidecar(name)
    return sidecar if sidecar is not None and (models_dir() / f"{name}.npz").is_file() else None
