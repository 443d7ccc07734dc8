"""Read ncnn ``.param``/``.bin`` files of ESRGAN-family networks, without ncnn.

Facts about the format that this module relies on:

- ``.param`` is text: the magic ``7767517``, a line ``layer_count blob_count``,
  then one line per layer: ``type name n_in n_out in_blobs... out_blobs...
  key=value...``. Negative keys (``-23310=1,0.2``) hold arrays.
- ``.bin`` holds the weights of the layers that have any, in ``.param`` order.
  A Convolution's weights start with a 4-byte tag (``0x01306B47``: float16,
  ``0``: float32), then OIHW weights; its bias follows as untagged float32.
  PReLU slopes are untagged float32.
- ``9=2`` on a Convolution fuses a LeakyReLU whose slope is in ``-23310``.

The ``x2``/``x3`` files of Real-ESRGAN's compact model are the x4 network
followed by a bicubic resize: they are refused here, since their output is
not what the x4 Keras network computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vsr.errors import VsrError
from vsr.models.converted import ConvertedModel
from vsr.models.pth import MAX_IMPORT_BYTES

MAGIC = "7767517"
TAG_FLOAT16 = 0x01306B47
TAG_FLOAT32 = 0


@dataclass
class NcnnLayer:
    """One layer line of a ``.param`` file."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str]
    weights: list[np.ndarray] = field(default_factory=list)
    source: str = "<param>"

    def param_int(self, key: int, default: int = 0, low: int = 0, high: int = 1 << 20) -> int:
        """Integer parameter ``key``, refused (one line) unless it lies in ``low..high``."""
        raw = self.params.get(key, default)
        try:
            value = int(raw)
        except ValueError:
            raise VsrError(
                f"{self.source}: layer {self.name[:60]!r}: parameter {key} is not an integer ({str(raw)[:20]!r})"
            ) from None
        if not low <= value <= high:
            raise VsrError(f"{self.source}: layer {self.name[:60]!r}: parameter {key}={value} is outside {low}..{high}")
        return value


def parse_param(text: str, source: str = "<param>") -> list[NcnnLayer]:
    """Parse the text of a ``.param`` file into layers."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != MAGIC:
        raise VsrError(f"{source}: not an ncnn .param file (magic {MAGIC} missing)")
    try:
        layer_count = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise VsrError(f"{source}: malformed ncnn .param header") from None
    layers: list[NcnnLayer] = []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            if not (0 <= n_in <= 64 and 0 <= n_out <= 64):
                raise ValueError("blob count")
            blobs = parts[4 : 4 + n_in + n_out]
            params: dict[int, str] = {}
            for item in parts[4 + n_in + n_out :]:
                key, value = item.split("=", 1)
                params[int(key)] = value
        except (IndexError, ValueError):
            raise VsrError(f"{source}:{lineno}: malformed ncnn layer line") from None
        layers.append(NcnnLayer(parts[0], parts[1], blobs[:n_in], blobs[n_in:], params, source=source))
    if len(layers) != layer_count:
        raise VsrError(f"{source}: header announces {layer_count} layers, found {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise VsrError(f"{self.source}: ncnn .bin file is truncated")
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), dtype="<f4").copy()

    def tagged(self, count: int) -> np.ndarray:
        tag = int.from_bytes(self.take(4), "little")
        if tag == TAG_FLOAT16:
            nbytes = 2 * count
            raw = self.take((nbytes + 3) // 4 * 4)  # fp16 data is padded to 4 bytes
            return np.frombuffer(raw[:nbytes], dtype="<f2").astype(np.float32)
        if tag == TAG_FLOAT32:
            return self.float32(count)
        raise VsrError(f"{self.source}: unsupported ncnn weight storage tag 0x{tag:08X} (quantised?)")


def read_ncnn(param_path: Path, bin_path: Path) -> list[NcnnLayer]:
    """Parse ``param_path`` and attach each layer's weights from ``bin_path``.

    Convolution weights come back as Keras kernels (HWIO), biases as vectors,
    PReLU slopes as ``(1, 1, C)`` arrays.
    """
    try:
        if param_path.stat().st_size > 1 << 20 or bin_path.stat().st_size > MAX_IMPORT_BYTES:
            raise VsrError(f"{param_path}: larger than any ESRGAN-family model")
        text = param_path.read_text(encoding="ascii")
        data = bin_path.read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise VsrError(f"cannot read ncnn model {param_path}: {exc}") from None
    layers = parse_param(text, str(param_path))
    reader = _Reader(data, str(bin_path))
    for layer in layers:
        if layer.type == "Convolution":
            out_ch = layer.param_int(0, low=1, high=4096)
            kernel = layer.param_int(1, low=1, high=7)
            if layer.param_int(11, kernel) != kernel or layer.param_int(3, 1) != 1 or layer.param_int(2, 1) != 1:
                raise VsrError(f"{param_path}: {layer.name}: only square, stride-1, undilated convs are supported")
            size = layer.param_int(6, low=1, high=MAX_IMPORT_BYTES // 4)
            in_ch = size // (out_ch * kernel * kernel)
            if in_ch * out_ch * kernel * kernel != size:
                raise VsrError(f"{param_path}: {layer.name}: weight size does not match its shape")
            oihw = reader.tagged(size).reshape(out_ch, in_ch, kernel, kernel)
            layer.weights.append(oihw.transpose(2, 3, 1, 0).copy())
            if layer.param_int(5):
                layer.weights.append(reader.float32(out_ch))
        elif layer.type == "PReLU":
            channels = layer.param_int(0, low=1, high=4096)
            layer.weights.append(reader.float32(channels).reshape(1, 1, channels))
        elif layer.type in {"InnerProduct", "ConvolutionDepthWise", "Deconvolution", "BatchNorm", "Scale"}:
            raise VsrError(f"{param_path}: layer type {layer.type} is not part of an ESRGAN-family network")
    if reader.pos != len(data):
        raise VsrError(f"{bin_path}: {len(data) - reader.pos} unexpected trailing bytes (wrong .bin for this .param?)")
    return layers


def convert(param_path: Path, bin_path: Path) -> ConvertedModel:
    """Recognise the network in an ncnn model and map its weights to our layer names."""
    layers = read_ncnn(param_path, bin_path)
    types = [layer.type for layer in layers]
    convs = [layer for layer in layers if layer.type == "Convolution"]
    interps = [layer for layer in layers if layer.type == "Interp"]
    if not convs:
        raise VsrError(f"{param_path}: no convolutions found: not an ESRGAN-family model")
    if any(layer.param_int(0) != 1 for layer in interps):
        raise VsrError(
            f"{param_path}: the network ends in a bicubic/bilinear resize (an x2/x3 variant of an x4 model); "
            "use the x4 model instead"
        )
    if "PReLU" in types and "PixelShuffle" in types:
        return _convert_srvgg(layers, convs, param_path)
    if "Concat" in types and "Eltwise" in types:
        return _convert_rrdb(convs, param_path)
    raise VsrError(f"{param_path}: unrecognised network (layer types: {', '.join(sorted(set(types)))})")


def _convert_srvgg(layers: list[NcnnLayer], convs: list[NcnnLayer], source: Path) -> ConvertedModel:
    prelus = [layer for layer in layers if layer.type == "PReLU"]
    shuffle = next(layer for layer in layers if layer.type == "PixelShuffle")
    upscale = shuffle.param_int(0, low=1, high=8)
    num_conv = len(convs) - 2
    if len(prelus) != num_conv + 1:
        raise VsrError(f"{source}: compact model with {len(convs)} convs but {len(prelus)} PReLUs")
    num_out_ch = convs[-1].param_int(0) // (upscale * upscale)
    weights: dict[str, list[np.ndarray]] = {}
    for i, conv in enumerate(convs):
        weights[f"body_{2 * i}"] = conv.weights
    for i, prelu in enumerate(prelus):
        weights[f"body_{2 * i + 1}"] = prelu.weights
    config = {
        "num_in_ch": convs[0].weights[0].shape[2],
        "num_out_ch": num_out_ch,
        "num_feat": convs[0].param_int(0),
        "num_conv": num_conv,
        "upscale": upscale,
    }
    return ConvertedModel("srvgg", config, weights)


def _convert_rrdb(convs: list[NcnnLayer], source: Path) -> ConvertedModel:
    # conv_first, 15 convs per RRDB (3 dense blocks x 5), conv_body, conv_up1, conv_up2, conv_hr, conv_last
    num_block, rest = divmod(len(convs) - 6, 15)
    if rest or num_block < 1:
        raise VsrError(f"{source}: {len(convs)} convs do not make an RRDBNet (6 + 15 per block)")
    names = ["conv_first"]
    names += [f"body_{b}_rdb{k}_conv{m}" for b in range(num_block) for k in (1, 2, 3) for m in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    weights = {name: conv.weights for name, conv in zip(names, convs, strict=True)}
    in_ch = convs[0].weights[0].shape[2]
    if in_ch != 3:
        raise VsrError(f"{source}: RRDBNet with {in_ch} input channels (pixel-unshuffled x1/x2 models) is unsupported")
    config = {
        "num_in_ch": 3,
        "num_out_ch": convs[-1].param_int(0),
        "num_feat": convs[0].param_int(0),
        "num_block": num_block,
        "num_grow_ch": convs[1].param_int(0),
    }
    return ConvertedModel("rrdbnet", config, weights)
