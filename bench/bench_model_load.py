"""How long a model takes to become usable: first use (convert) against later runs (store).

For each built-in model (ncnn files): the first load reads and converts the
ncnn files and writes the store; later loads read the verified ``.npz``.

Where PyTorch is installed (it is only a tool here: ``pip install
torch==2.13.0``), the same real weights are also written as full-size
PyTorch checkpoints, as BasicSR saves them (zip format, ``params_ema``) and
in the legacy pre-1.6 format with the original ESRGAN key names, then
imported with ``vsr models import``'s code and compared weight for weight
with the ncnn conversion: a real-size round trip of the torch-free reader.

Not a test: ``python bench/bench_model_load.py [--models realesrgan-x4plus]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.models.converted import ConvertedModel
from vsr.models.store import import_model, imported_spec, load_converted
from vsr.plugins import load_registry


def _timed(func: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def _torch_names(converted: ConvertedModel, old: bool) -> dict[str, np.ndarray]:
    """Keras weights back to PyTorch names and layouts (OIHW)."""
    blocks = converted.config["num_block"]
    fixed = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_up1": "model.3"}
    fixed |= {"conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    state = {}
    for layer, (kernel, bias) in converted.weights.items():
        if layer.startswith("body_"):
            _, b, rdb, conv = layer.split("_")
            name = f"model.1.sub.{b}.RDB{rdb[-1]}.{conv}.0" if old else f"body.{b}.{rdb}.{conv}"
        else:
            name = fixed[layer] if old else layer
        state[f"{name}.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"{name}.bias"] = bias
    return state


def _pth_round_trip(name: str, converted: ConvertedModel, work: Path) -> None:
    try:
        import torch
    except ImportError:
        print(f"  {name}: PyTorch not installed; .pth round trip skipped")
        return
    for old in (False, True):
        state = collections.OrderedDict(
            (k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in _torch_names(converted, old).items()
        )
        path = work / f"{name}{'-old' if old else ''}.pth"
        torch.save(state if old else {"params_ema": state}, path, _use_new_zipfile_serialization=not old)
        label = "legacy, ESRGAN names" if old else "zip, params_ema"
        sidecar, first = _timed(lambda p=path, n=f"rt-{name}-{int(old)}": import_model(p, n))
        spec = load_registry().model(name)
        (imported, cached), later = _timed(lambda s=sidecar: load_converted(imported_spec(s)))
        assert cached
        same = all(
            np.array_equal(a, b)
            for layer, ws in converted.weights.items()
            for a, b in zip(ws, imported.weights[layer], strict=True)
        )
        size = path.stat().st_size / 1e6
        print(
            f"  {name} .pth ({label}, {size:.0f} MB): import {first:.2f} s, later loads {later:.2f} s, "
            f"weights identical to the ncnn conversion: {same}, scale x{imported.scale} (spec x{spec.scale})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="*", default=["realesr-animevideov3", "realesrgan-x4plus-anime", "realesrgan-x4plus"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VSR_CACHE_DIR"] = str(Path(tmp) / "store")
        registry = load_registry()
        print("model: first load (convert + store) / later loads (verified .npz), seconds")
        for name in args.models:
            spec = registry.model(name)
            (converted, cached), first = _timed(lambda s=spec: load_converted(s))
            assert not cached
            later = min(_timed(lambda s=spec: load_converted(s))[1] for _ in range(3))
            print(
                f"  {name} (ncnn, {converted.parameters / 1e6:.1f} M weights): first {first:.2f} s, later {later:.2f} s"
            )
            if converted.arch == "rrdbnet":
                _pth_round_trip(name, converted, Path(tmp))


if __name__ == "__main__":
    main()
