"""Converted weights, cached on disk and verified on every load.

Layout of the cache (``$VSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vsr``, else
``~/.cache/vsr``)::

    models/<name>.npz    weights by Keras layer name ("<layer>/<i>")
    models/<name>.json   sidecar: arch, config, SHA-256 of the sources and of
                         the .npz, conversion date, vsr version

A cache entry is used only when the sources still hash to what the sidecar
says and the ``.npz`` hashes to its recorded digest; otherwise the model is
converted again. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vsr.errors import VsrError
from vsr.models.ncnn import ConvertedModel
from vsr.models.registry import ModelSpec

FORMAT_VERSION = 1


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


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def load_converted(spec: ModelSpec) -> tuple[ConvertedModel, bool]:
    """The converted model for ``spec``, from the cache when valid.

    Returns:
        The model and whether it came from the cache.
    """
    for source in spec.sources:
        if not source.is_file():
            raise VsrError(f"model {spec.name}: weight file {source} is missing (reinstall its package)")
    source_hashes = {p.name: sha256_file(p) for p in spec.sources}
    root = cache_dir() / "models"
    weights_path, sidecar_path = root / f"{spec.name}.npz", root / f"{spec.name}.json"
    try:
        sidecar: dict[str, Any] = json.loads(sidecar_path.read_text())
        if sidecar.get("format") == FORMAT_VERSION and sidecar.get("sources") == source_hashes:
            data = weights_path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sidecar.get("weights_sha256"):
                return ConvertedModel(sidecar["arch"], sidecar["config"], _unpack(data)), True
    except (OSError, ValueError, KeyError):
        pass  # no cache, or a damaged one: convert again
    converted = spec.convert()
    data = _pack(converted.weights)
    from vsr import __version__

    sidecar = {
        "format": FORMAT_VERSION,
        "name": spec.name,
        "arch": converted.arch,
        "config": converted.config,
        "scale": spec.scale,
        "sources": source_hashes,
        "source_paths": [str(p) for p in spec.sources],
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "converted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "vsr_version": __version__,
    }
    try:
        _atomic_write(weights_path, data)
        _atomic_write(sidecar_path, json.dumps(sidecar, indent=2).encode())
    except OSError as exc:
        raise VsrError(f"cannot write the model cache in {root}: {exc} (set VSR_CACHE_DIR)") from None
    return converted, False
