"""Recognise an ESRGAN-family network in a state dict, and convert any model file.

Layouts understood (after unwrapping ``params_ema`` (preferred, as
Real-ESRGAN does), ``params`` or ``state_dict``, and stripping ``module.`` /
``_orig_mod.`` prefixes):

- **RRDBNet, BasicSR names**: ``conv_first``, ``body.N.rdbK.convM``,
  ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``. The
  first conv's input channels give the scale: 3 for x4, 12 for x2 and 48
  for x1 (pixel-unshuffled input).
- **RRDBNet, original ESRGAN names**: ``model.0`` (first conv),
  ``model.1.sub.N.RDBK.convM.0``, ``model.1.sub.<num_block>`` (trunk conv),
  then one conv per x2 upsampling (``model.3``, ``model.6`` for x4) and the
  two high-resolution convs (``model.8``, ``model.10``).
- **SRVGGNetCompact**: ``body.N``: convs at even N, PReLU slopes at odd N;
  the last conv's output channels give the scale.

Shapes decide every size: ``num_feat``, ``num_grow_ch``, ``num_block``,
``num_conv`` and the scale.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from vsr.errors import VsrError
from vsr.models.converted import ConvertedModel, check_architecture
from vsr.models.pth import MAX_IMPORT_BYTES, CheckpointError, Tensor, read_checkpoint, small_ints

WRAPPERS = ("params_ema", "params", "state_dict")
PREFIXES = ("module.", "_orig_mod.")
#: File suffixes read as model files by ``--model PATH`` and ``vsr models import``.
MODEL_SUFFIXES = {".pth", ".pt", ".ckpt", ".safetensors", ".param"}


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(repr(k[:60]) for k in keys[:6])
    return f"{shown}{', ...' if len(keys) > 6 else ''} ({len(keys)} in all)"


def state_dict_of(obj: Any, source: str) -> dict[str, np.ndarray]:
    """The weights in a loaded checkpoint, unwrapped and with prefixes stripped."""
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next(
            (
                obj[k]
                for k in WRAPPERS
                if isinstance(obj.get(k), dict) and any(isinstance(v, Tensor) for v in obj[k].values())
            ),
            None,
        )
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise VsrError(f"{source}: holds a {type(obj).__name__}, not a state dict of weights")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        keys = [str(k) for k in list(obj)[:50]]
        raise VsrError(f"{source}: no weights found (top-level keys: {_describe_keys(keys) if keys else 'none'})")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    try:
        return {k: v.numpy() for k, v in tensors.items()}
    except CheckpointError as exc:
        raise type(exc)(f"{source}: {exc}") from None


class _Mapper:
    """Moves tensors from a state dict to Keras layer names, checking that all are used."""

    def __init__(self, state: dict[str, np.ndarray], source: str) -> None:
        self.state = state
        self.used: set[str] = set()
        self.weights: dict[str, list[np.ndarray]] = {}
        self.source = source

    def get(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise VsrError(f"{self.source}: tensor {key!r} is missing")
        self.used.add(key)
        return self.state[key]

    def conv(self, torch_name: str, keras_name: str) -> np.ndarray:
        weight = self.get(f"{torch_name}.weight")
        if weight.ndim != 4:
            raise VsrError(f"{self.source}: {torch_name}.weight has shape {weight.shape}, expected a 2-D conv")
        self.weights[keras_name] = [weight.transpose(2, 3, 1, 0).astype(np.float32), self.get(f"{torch_name}.bias")]
        return weight

    def prelu(self, torch_name: str, keras_name: str) -> None:
        slopes = self.get(f"{torch_name}.weight")
        self.weights[keras_name] = [slopes.reshape(1, 1, -1).astype(np.float32)]

    def finish(self, arch: str, config: dict[str, int]) -> ConvertedModel:
        extra = sorted(set(self.state) - self.used)
        if extra:
            raise VsrError(f"{self.source}: {arch} checkpoint with unexpected tensors {_describe_keys(extra)}")
        if config.get("num_out_ch", 3) != 3 or config.get("num_in_ch", 3) != 3:
            raise VsrError(f"{self.source}: {arch} for {config.get('num_in_ch')}-channel images; vsr upscales RGB")
        return ConvertedModel(arch, config, self.weights)


def _count(state: dict[str, np.ndarray], pattern: str) -> int:
    n = 0
    while pattern.format(n) in state:
        n += 1
    return n


def _rrdb_blocks(m: _Mapper, num_block: int, name: str) -> None:
    for b in range(num_block):
        for k in (1, 2, 3):
            for c in range(1, 6):
                m.conv(name.format(b=b, k=k, c=c), f"body_{b}_rdb{k}_conv{c}")


def _rrdb_config(first: np.ndarray, m: _Mapper, num_block: int, num_upsample: int, source: str) -> dict[str, int]:
    unshuffle = {3: 1, 12: 2, 48: 4}.get(first.shape[1])
    if unshuffle is None:
        raise VsrError(
            f"{source}: RRDBNet whose first conv takes {first.shape[1]} channels "
            "(expected 3 for RGB, or 12/48 for pixel-unshuffled x2/x1 models)"
        )
    scale = 2**num_upsample // unshuffle
    if scale < 1 or 2**num_upsample % unshuffle:
        raise VsrError(f"{source}: RRDBNet with {num_upsample} upsamplings cannot take a x{unshuffle} unshuffled input")
    return {
        "num_in_ch": 3,
        "num_out_ch": int(m.weights["conv_last"][0].shape[3]),
        "num_feat": int(first.shape[0]),
        "num_block": num_block,
        "num_grow_ch": int(m.weights["body_0_rdb1_conv1"][0].shape[3]),
        "scale": scale,
        "num_upsample": num_upsample,
    }


def _basicsr_rrdb(state: dict[str, np.ndarray], source: str) -> ConvertedModel:
    m = _Mapper(state, source)
    first = m.conv("conv_first", "conv_first")
    num_block = _count(state, "body.{}.rdb1.conv1.weight")
    _rrdb_blocks(m, num_block, "body.{b}.rdb{k}.conv{c}")
    num_upsample = sum(1 for i in range(1, 5) if f"conv_up{i}.weight" in state)
    for name in ["conv_body", *(f"conv_up{i}" for i in range(1, num_upsample + 1)), "conv_hr", "conv_last"]:
        m.conv(name, name)
    return m.finish("rrdbnet", _rrdb_config(first, m, num_block, num_upsample, source))


def _esrgan_rrdb(state: dict[str, np.ndarray], source: str) -> ConvertedModel:
    m = _Mapper(state, source)
    first = m.conv("model.0", "conv_first")
    num_block = _count(state, "model.1.sub.{}.RDB1.conv1.0.weight")
    _rrdb_blocks(m, num_block, "model.1.sub.{b}.RDB{k}.conv{c}.0")
    m.conv(f"model.1.sub.{num_block}", "conv_body")
    tail = sorted(
        int(k.split(".")[1]) for k in state if re.fullmatch(r"model\.\d+\.weight", k) and k != "model.0.weight"
    )
    if len(tail) < 2:
        raise VsrError(f"{source}: ESRGAN checkpoint without its high-resolution convs")
    *ups, hr, last = tail
    for i, index in enumerate(ups, start=1):
        m.conv(f"model.{index}", f"conv_up{i}")
    m.conv(f"model.{hr}", "conv_hr")
    m.conv(f"model.{last}", "conv_last")
    return m.finish("rrdbnet", _rrdb_config(first, m, num_block, len(ups), source))


def _srvgg(state: dict[str, np.ndarray], source: str) -> ConvertedModel:
    m = _Mapper(state, source)
    count = _count(state, "body.{}.weight")
    if count < 3 or count % 2 == 0:
        raise VsrError(f"{source}: SRVGGNetCompact layout with {count} body layers (expected conv/PReLU pairs)")
    for index in range(count):
        if index % 2:
            if state[f"body.{index}.weight"].ndim != 1:
                raise VsrError(f"{source}: body.{index} is not a PReLU (compact models without PReLU are unsupported)")
            m.prelu(f"body.{index}", f"body_{index}")
        else:
            m.conv(f"body.{index}", f"body_{index}")
    first, last = state["body.0.weight"], state[f"body.{count - 1}.weight"]
    in_ch = int(first.shape[1])
    upscale = math.isqrt(last.shape[0] // in_ch)
    if upscale * upscale * in_ch != last.shape[0]:
        raise VsrError(f"{source}: last conv has {last.shape[0]} channels: not {in_ch} x a square scale")
    config = {
        "num_in_ch": in_ch,
        "num_out_ch": in_ch,
        "num_feat": int(first.shape[0]),
        "num_conv": (count + 1) // 2 - 2,
        "upscale": upscale,
    }
    return m.finish("srvgg", config)


def convert_state_dict(state: dict[str, np.ndarray], source: str) -> ConvertedModel:
    """Recognise the architecture from keys and shapes and map the weights to Keras names."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return _basicsr_rrdb(state, source)
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        return _esrgan_rrdb(state, source)
    if "body.0.weight" in state and "body.1.weight" in state:
        return _srvgg(state, source)
    raise VsrError(
        f"{source}: unrecognised network; found {_describe_keys(sorted(state))}. vsr reads RRDBNet "
        "(BasicSR names conv_first/body.N.rdbK or the original ESRGAN model.N names) and SRVGGNetCompact (body.N)"
    )


SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file: an 8-byte header length, a JSON header, then raw little-endian data.

    Every array made counts against the import's memory budget
    (:data:`vsr.models.pth.MAX_IMPORT_BYTES`), so entries that overlap the
    same bytes cannot multiply a small file into gigabytes.
    """
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise CheckpointError(f"{path}: {size >> 20} MB; larger than any ESRGAN-family model")
        data = path.read_bytes()
    except OSError as exc:
        raise VsrError(f"cannot read {path}: {exc.strerror or exc}") from None
    spent = 0
    try:
        (length,) = struct.unpack("<Q", data[:8])
        if length > min(len(data) - 8, 16 << 20):
            raise ValueError("header longer than the file")
        header = json.loads(data[8 : 8 + length])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        body = memoryview(data)[8 + length :]
        entries = []
        for name, info in header.items():  # everything checked, and the memory counted, before any copy
            if name == "__metadata__":
                continue
            dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
            start, end = info["data_offsets"]
            shape = info["shape"]
            if not (small_ints(shape) and type(start) is int and type(end) is int):
                raise ValueError(f"tensor {name[:60]!r} has a malformed shape or offsets")
            if not 0 <= start <= end <= len(body) or end - start != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"tensor {name[:60]!r} does not fit the file")
            spent += math.prod(shape) * 4
            if spent > MAX_IMPORT_BYTES:
                raise CheckpointError(f"{path}: needs over {MAX_IMPORT_BYTES >> 20} MB for its tensors")
            entries.append((name, info, dtype, start, end, shape))
        tensors = {}
        for name, info, dtype, start, end, shape in entries:
            array = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
            if info["dtype"] == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = array.astype(np.float32) if array.dtype.kind == "f" else array.copy()
    except (ValueError, KeyError, TypeError, AttributeError, struct.error, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise CheckpointError(f"{path}: damaged or truncated safetensors file ({reason})") from None
    for prefix in PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def ncnn_pair(path: Path) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` of an ncnn model, given either."""
    param, weights = path.with_suffix(".param"), path.with_suffix(".bin")
    for needed in (param, weights):
        if not needed.is_file():
            raise VsrError(f"{needed}: missing (an ncnn model is a .param file and a .bin file side by side)")
    return param, weights


def convert_file(path: Path) -> tuple[ConvertedModel, str]:
    """Convert any supported model file; returns the model and its format name.

    ``.param`` (with its ``.bin`` beside it, or the ``.bin`` itself) is read
    as ncnn, ``.safetensors`` as safetensors, anything else as a PyTorch
    checkpoint (zip or legacy).
    """
    from vsr.models.ncnn import convert as convert_ncnn

    suffix = path.suffix.lower()
    try:
        if suffix in (".param", ".bin"):
            converted, kind = convert_ncnn(*ncnn_pair(path)), "ncnn"
        elif suffix == ".safetensors":
            converted, kind = convert_state_dict(read_safetensors(path), str(path)), "safetensors"
        else:
            converted, kind = convert_state_dict(state_dict_of(read_checkpoint(path), str(path)), str(path)), "pytorch"
    except VsrError:
        raise
    except (RecursionError, MemoryError):
        raise CheckpointError(f"{path}: nested too deeply or too large to be a model file") from None
    except Exception as exc:  # a parser meeting a file it was not written for: the file's problem, in one line
        raise CheckpointError(f"{path}: not a model file vsr can read ({type(exc).__name__}: {exc})") from None
    check_architecture(converted, str(path))  # before anything builds it: a 360 GB kernel is refused here
    return converted, kind
