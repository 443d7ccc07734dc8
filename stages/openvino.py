"""The ``openvino`` engine: vsr's Keras networks, converted to OpenVINO and run by its CPU plugin.

A built-in plugin of the kind anyone can write (:mod:`vsr.engine`): it
registers an engine through the ``register_engines`` hook, and vsr's core
knows nothing about OpenVINO. Needs the ``openvino`` package (PyPI,
Apache-2.0, kept by Intel); without it the engine reports itself missing and
``engine = "auto"`` falls back to Keras.

The Keras network stays the one definition of the model. The engine converts
its compiled graph (integer pixels in and out, :func:`vsr.engine.io_graph`,
always in float32) with ``openvino.convert_model`` from a ``tf.function``,
and caches the IR in the model store, keyed by the converted weights'
SHA-256 and the network's layers, so later runs start without converting. The precision is
OpenVINO's inference precision hint (bfloat16 runs natively on CPUs with
AVX-512 BF16 or AMX; elsewhere the plugin computes in float32), and the
engine reports what the compiled model says it runs in, not what it asked
for. One compiled model per window shape; with batches of windows, the
CPU's streams run them side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vsr import ConvertedModel, Engine, EngineRegister, UsageError, VsrError, converted_digest, hookimpl, io_graph

log = logging.getLogger("vsr")

#: vsr's precision names -> OpenVINO's inference precision hints (int8: for the layers left in floating point)
HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "int8": "bf16"}
#: int8 keeps at least this PSNR against float32 on the validation pictures (NNCF's accuracy control puts layers
#: back into floating point until it does); see docs/engines.md.
INT8_PSNR = 40.0
#: The pictures int8 is calibrated and validated on (stages/calibration/README.md).
CALIBRATION = Path(__file__).parent / "calibration"
#: bump when the graph vsr converts changes in a way that neither the weights' digest nor the
#: network's layers (names and classes, hashed into the cache key) show
IR_FORMAT = 1


def no_telemetry() -> None:
    """Keep OpenVINO's converter from phoning home, and from writing a client id under ``~/intel``.

    Its telemetry counts a missing opt-out file as consent (``enable_opt_in_dialog=False``), and the
    documented opt-out (``opt_in_out --opt_out``) writes a file in the user's home. The converter runs
    without the optional ``openvino_telemetry`` package, through its own no-op stub, when that package
    cannot be imported: so vsr makes it unimportable for this process before the converter is loaded
    (``import openvino`` loads it).
    """
    if sys.modules.get("openvino_telemetry") is None:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # "import" raises ImportError
    else:  # imported before this plugin loaded: decline consent in the instance the converter will share
        with contextlib.suppress(Exception):
            sys.modules["openvino_telemetry"].Telemetry().consent = False


no_telemetry()  # before anything here imports openvino, which loads the converter and its telemetry


def ir_dir() -> Path:
    """Where converted IRs are cached: ``openvino/`` beside the converted weights in the model store."""
    from vsr import models_dir

    return models_dir() / "openvino"


def _precision_name(ov_type: Any) -> str:
    names = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
    text = str(getattr(ov_type, "get_type_name", lambda: ov_type)())
    return names.get(text, text)


class OpenVINOEngine(Engine):
    """The network through OpenVINO's CPU plugin."""

    name = "openvino"
    description = "Intel OpenVINO on the CPU (pip install openvino): fastest on CPUs; converts once, cached"

    @classmethod
    def missing(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "the openvino package is not installed (pip install openvino)"
        if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
            return "it converts the network through TensorFlow, and KERAS_BACKEND is not tensorflow"
        return None

    @classmethod
    def auto_rank(cls, gpu: bool) -> int | None:
        return None if gpu else 10  # on CPUs it beats TensorFlow's kernels (bench/README.md)

    @classmethod
    def build(cls, converted: ConvertedModel, precision: str, out_dtype: str, batch: int) -> OpenVINOEngine:
        return cls(converted, precision, out_dtype, batch)

    def __init__(self, converted: ConvertedModel, precision: str, out_dtype: str = "uint8", batch: int = 1) -> None:
        import openvino as ov

        from vsr import build_network

        if precision not in HINTS:
            raise VsrError(f"the openvino engine has no precision {precision!r}")
        self.core = ov.Core()
        self.network = build_network(converted, "float32")  # OpenVINO lowers the precision itself
        self.out_dtype = out_dtype
        layers = [(layer.name, type(layer).__name__) for layer in self.network.layers]
        self.key = hashlib.sha256(f"{converted_digest(converted)} {layers}".encode()).hexdigest()
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            # a batch of windows runs on the CPU's streams side by side; one window at a time uses every core
            "PERFORMANCE_HINT": "THROUGHPUT" if batch > 1 else "LATENCY",
        }
        # a worker of a scaled-out run is given its share of the cores this way (vsr.running.executors, vsr.running.ray)
        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS") or os.environ.get("OMP_NUM_THREADS") or 0)
        if threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.int8 = precision == "int8"
        if self.int8 and importlib.util.find_spec("nncf") is None:
            raise UsageError("precision int8 needs NNCF, Intel's quantization library: pip install 'vsr[int8]'")
        self.int8_psnr: float | None = None  # what the quantized model keeps, once it is built
        self._models: dict[str, Any] = {}
        self._compiled: dict[tuple[Any, ...], Any] = {}
        self.version = ov.get_version().split("-")[0]
        name = str(self.core.get_property("CPU", "FULL_DEVICE_NAME")).strip()
        self.device = f"CPU ({name}) via OpenVINO {self.version}"
        # what the compiled model runs in, read back from a small compiled copy (compiling takes well under a second)
        multiple = int(self.network.input_multiple)
        probe = self._compile("uint8", (16 * multiple, 16 * multiple))[0]
        self.precision = _precision_name(probe.get_property("INFERENCE_PRECISION_HINT"))
        if self.int8:
            self.precision = f"int8 ({self.int8_psnr:.1f} dB against float32)"

    def _ir(self, in_dtype: str) -> Any:
        """The converted graph for ``in_dtype`` pixels, from the cache or converted (and cached) now; for int8,
        quantized (and cached, keyed by the calibration pictures too)."""
        if in_dtype in self._models:
            return self._models[in_dtype]
        stem = f"{self.key[:32]}-{in_dtype}-{self.out_dtype}-ir{IR_FORMAT}-ov{self.version}"
        model = self._read_cached(stem)
        if model is None:
            model = self._convert(in_dtype)
            self._write_cached(stem, model)
        if self.int8:
            stem += f"-int8-{_calibration_digest()[:12]}"
            quantized = self._read_cached(stem)
            if quantized is None:
                log.info("quantizing the network to int8 (once; NNCF, %s dB or better against float32)", INT8_PSNR)
                quantized, psnr = quantize(model, in_dtype)
                self._write_cached(stem, quantized, {"psnr": psnr})
            model = quantized
            self.int8_psnr = float(json.loads((ir_dir() / f"{stem}.json").read_text()).get("psnr", "nan"))
        self._models[in_dtype] = model
        return model

    def _read_cached(self, stem: str) -> Any:
        from vsr import sha256_file

        xml, weights, sidecar = (ir_dir() / f"{stem}{ext}" for ext in (".xml", ".bin", ".json"))
        try:
            expected = json.loads(sidecar.read_text())
            if sha256_file(xml) != expected["xml_sha256"] or sha256_file(weights) != expected["bin_sha256"]:
                log.warning("the cached OpenVINO model %s is damaged: converting again", xml)
                return None
            return self.core.read_model(str(xml))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None  # not cached yet (or unreadable): convert

    def _convert(self, in_dtype: str) -> Any:
        import keras
        import openvino as ov

        if keras.backend.backend() != "tensorflow":
            raise VsrError("the openvino engine converts the network through TensorFlow (KERAS_BACKEND=tensorflow)")
        import tensorflow as tf

        graph = io_graph(self.network, in_dtype, self.out_dtype)
        function = tf.function(
            lambda pixels: graph(pixels, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], getattr(tf, in_dtype))],
        )
        return ov.convert_model(function)

    def _write_cached(self, stem: str, model: Any, extra: dict[str, Any] | None = None) -> None:
        """Write the IR atomically: files go to a temporary folder, then the sidecar that vouches for them last."""
        import openvino as ov

        from vsr import sha256_file, write_atomic

        root = ir_dir()
        try:
            root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
            try:
                ov.save_model(model, str(scratch / f"{stem}.xml"), compress_to_fp16=False)
                hashes = {f"{ext}_sha256": sha256_file(scratch / f"{stem}.{ext}") for ext in ("xml", "bin")}
                hashes.update(extra or {})
                for ext in ("bin", "xml"):
                    os.replace(scratch / f"{stem}.{ext}", root / f"{stem}.{ext}")
                write_atomic(root / f"{stem}.json", json.dumps(hashes, indent=2).encode())
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError as exc:  # a read-only cache costs a conversion per run, nothing else
            log.warning("cannot cache the converted OpenVINO model in %s: %s", root, exc.strerror or exc)

    def _compile(self, in_dtype: str, size: tuple[int, int]) -> Any:
        """The model compiled for one window shape (batch 1), with its infer request and queue; reused."""
        import openvino as ov

        key = (in_dtype, *size)
        if key not in self._compiled:
            model = self._ir(in_dtype).clone()
            model.reshape([1, size[0], size[1], 3])
            compiled = self.core.compile_model(model, "CPU", self.config)
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            queue = ov.AsyncInferQueue(compiled, jobs) if jobs > 1 else None
            self._compiled[key] = (compiled, compiled.create_infer_request(), queue)
        return self._compiled[key]

    def run(self, windows: np.ndarray) -> np.ndarray:
        _, request, queue = self._compile(str(windows.dtype), windows.shape[1:3])
        outputs: list[np.ndarray | None] = [None] * len(windows)
        if queue is None or len(windows) == 1:
            for i, window in enumerate(windows):
                request.infer({0: window[None]})
                outputs[i] = request.get_output_tensor(0).data[0].copy()
        else:

            def done(finished: Any, index: int) -> None:
                outputs[index] = finished.get_output_tensor(0).data[0].copy()

            queue.set_callback(done)
            for i, window in enumerate(windows):
                queue.start_async({0: window[None]}, userdata=i)
            queue.wait_all()
        return np.stack(outputs)  # type: ignore[arg-type]


def _calibration_digest() -> str:
    digest = hashlib.sha256(f"int8 v1 {INT8_PSNR}".encode())
    for path in sorted(CALIBRATION.glob("*.png")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def calibration_pictures(in_dtype: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """int8's calibration windows (64 px, eight from each picture) and validation pictures, as ``in_dtype``."""
    from PIL import Image

    from vsr import cartoon_frame

    def load(name: str) -> np.ndarray:
        return np.asarray(Image.open(CALIBRATION / f"{name}.png").convert("RGB"))

    rng = np.random.default_rng(0)
    windows = []
    for picture in [load(n) for n in ("chelsea", "rocket", "hubble_deep_field")] + [
        cartoon_frame(i, 256, 144, 24) for i in (5, 60)
    ]:
        for _ in range(8):
            y, x = (int(rng.integers(0, side - 64 + 1)) for side in picture.shape[:2])
            windows.append(picture[y : y + 64, x : x + 64])
    validation = [load("coffee"), cartoon_frame(30, 256, 144, 24), cartoon_frame(90, 256, 144, 24)]
    scale = 257 if in_dtype == "uint16" else 1
    return (
        [(w.astype(in_dtype) * scale)[None] for w in windows],
        [(v.astype(in_dtype) * scale)[None] for v in validation],
    )


def quantize(model: Any, in_dtype: str) -> tuple[Any, float]:
    """``model`` (float IR) quantized to int8 with NNCF, keeping :data:`INT8_PSNR`: its PSNR against float32 on
    the validation pictures (layers that cost most go back to floating point until it holds), and that PSNR."""
    import io

    import nncf
    import openvino as ov

    from vsr import quiet_native_stderr

    core = ov.Core()
    calibration, validation = calibration_pictures(in_dtype)
    reference = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    truth = [np.asarray(reference(picture)[0], dtype=np.float64) for picture in validation]
    peak = 65535.0 if np.dtype(in_dtype) == np.uint16 else 255.0

    def psnr(compiled: Any, pictures: Any) -> float:
        values = []
        for picture, expected in zip(pictures, truth, strict=True):
            mse = float(((np.asarray(compiled(picture)[0], dtype=np.float64) - expected) ** 2).mean())
            values.append(60.0 if mse == 0 else min(60.0, 10 * np.log10(peak**2 / mse)))  # 60: "equal"
        return float(np.mean(values))

    nncf.set_log_level(logging.ERROR)
    with quiet_native_stderr(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize_with_accuracy_control(
            model,
            nncf.Dataset(calibration),
            nncf.Dataset(validation),
            psnr,
            max_drop=60.0 - INT8_PSNR,
            drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: the networks' are not centred on 0
            subset_size=len(calibration),
        )
        kept = psnr(core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), validation)
    return quantized, kept


@hookimpl
def register_engines(register: EngineRegister) -> None:
    register(OpenVINOEngine)
