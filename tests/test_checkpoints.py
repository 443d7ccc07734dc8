"""Torch-free checkpoint import: parity with PyTorch references, layouts, and hostile files."""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vsr.errors import VsrError
from vsr.models.build import build_network
from vsr.models.checkpoint import convert_file, convert_state_dict, read_safetensors, state_dict_of
from vsr.models.pth import CheckpointError, UnsafeCheckpoint, read_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"

#: fixture -> (arch, scale, config subset); written by tests/fixtures/make_checkpoints.py with real torch.save
EXPECTED = {
    "rrdb_x4_params_ema": ("rrdbnet", 4, {"num_block": 2, "num_feat": 8, "num_grow_ch": 4, "num_upsample": 2}),
    "rrdb_x4_old_legacy": ("rrdbnet", 4, {"num_block": 2, "num_feat": 8, "num_grow_ch": 4, "num_upsample": 2}),
    "rrdb_x2_old": ("rrdbnet", 2, {"num_block": 1, "num_upsample": 1}),
    "rrdb_x2_fp16": ("rrdbnet", 2, {"num_block": 1, "num_upsample": 2}),
    "rrdb_x1_bf16_module": ("rrdbnet", 1, {"num_block": 1, "num_upsample": 2}),
    "srvgg_x4_views": ("srvgg", 4, {"num_conv": 3, "num_feat": 8}),
    "srvgg_x4_legacy": ("srvgg", 4, {"num_conv": 3, "num_feat": 8}),
    "srvgg_x2_bare": ("srvgg", 2, {"num_conv": 2, "num_feat": 8}),
}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return dict(data)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_keras_matches_the_pytorch_reference(name, reference):
    converted, fmt = convert_file(FIXTURES / f"{name}.pth")
    arch, scale, config = EXPECTED[name]
    assert fmt == "pytorch"
    assert (converted.arch, converted.scale) == (arch, scale)
    assert {k: converted.config[k] for k in config} == config
    image = reference["input"]
    out = build_network(converted).predict_on_batch(image)
    expected = reference[name]
    assert out.shape == expected.shape == (1, image.shape[1] * scale, image.shape[2] * scale, 3)
    assert np.abs(out - expected).max() < 1e-5


def test_views_into_a_shared_storage_read_like_separate_tensors():
    shared = state_dict_of(read_checkpoint(FIXTURES / "srvgg_x4_views.pth"), "views")
    separate = state_dict_of(read_checkpoint(FIXTURES / "srvgg_x4_legacy.pth"), "legacy")
    assert shared.keys() == separate.keys()
    for key in shared:
        assert shared[key].flags.c_contiguous
        np.testing.assert_array_equal(shared[key], separate[key])


def test_params_ema_is_preferred_and_extra_entries_are_ignored():
    obj = read_checkpoint(FIXTURES / "rrdb_x1_bf16_module.pth")
    assert obj["iter"] == 1000  # a non-tensor entry beside the state dict
    state = state_dict_of(obj, "x")
    assert all(not k.startswith("module.") for k in state)
    bias = obj["state_dict"]["module.conv_first.bias"]
    both = {"params": {"conv_first.bias": bias}, "params_ema": obj["state_dict"], "optimizer": {}}
    assert state_dict_of(both, "x").keys() == state.keys()  # the EMA weights win, as in Real-ESRGAN
    assert state_dict_of({"params": {"conv_first.bias": bias}}, "x").keys() == {"conv_first.bias"}


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_safetensors(tmp_path, reference):
    state = state_dict_of(read_checkpoint(FIXTURES / "srvgg_x2_bare.pth"), "x")
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, state)
    converted, fmt = convert_file(path)
    assert fmt == "safetensors" and converted.scale == 2
    out = build_network(converted).predict_on_batch(reference["input"])
    assert np.abs(out - reference["srvgg_x2_bare"]).max() < 1e-5
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="does not fit"):
        read_safetensors(path)


def test_unknown_layouts_say_what_was_found():
    with pytest.raises(VsrError, match=r"unrecognised network; found 'encoder.weight'"):
        convert_state_dict({"encoder.weight": np.zeros((4, 3, 3, 3), np.float32)}, "f.pth")
    state = state_dict_of(read_checkpoint(FIXTURES / "rrdb_x2_fp16.pth"), "x")
    with pytest.raises(VsrError, match=r"unexpected tensors 'extra\.weight'"):
        convert_state_dict({**state, "extra.weight": np.zeros(3, np.float32)}, "f.pth")
    grey = {**state, "conv_first.weight": np.zeros((8, 5, 3, 3), np.float32)}
    with pytest.raises(VsrError, match="takes 5 channels"):
        convert_state_dict(grey, "f.pth")
    with pytest.raises(VsrError, match="no weights found"):
        state_dict_of({"epoch": 3}, "f.pth")


# --- hostile and broken files -------------------------------------------------------------------


class _Evil:
    """Pickles as a call of ``func(*args)``, as a malicious checkpoint would."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _zip_checkpoint(path: Path, payload: bytes, extra: dict[str, bytes] | None = None, prefix: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", payload)
        archive.writestr(f"{prefix}/byteorder", b"little")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def _legacy_checkpoint(path: Path, payload: bytes) -> Path:
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    path.write_bytes(head + payload + pickle.dumps([], protocol=2))
    return path


def _payloads(marker: Path) -> dict[str, bytes]:
    import builtins
    import subprocess

    return {
        "os.system": pickle.dumps({"w": _Evil(os.system, f"touch {marker}")}, protocol=2),
        "builtins.eval": pickle.dumps(_Evil(builtins.eval, f"open({str(marker)!r}, 'w')"), protocol=2),
        "subprocess.Popen": pickle.dumps(_Evil(subprocess.Popen, ["touch", str(marker)]), protocol=4),
    }


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path, container, attack):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[attack]
    path = tmp_path / "evil.pth"
    _zip_checkpoint(path, payload) if container == "zip" else _legacy_checkpoint(path, payload)
    with pytest.raises(UnsafeCheckpoint, match="refusing to load it") as info:
        read_checkpoint(path)
    # the name as pickled: os.system is posix.system; protocol 2 writes builtins as __builtin__
    named = {"os.system": "posix.system", "builtins.eval": "__builtin__.eval"}.get(attack, attack)
    assert named in str(info.value)
    assert not marker.exists()


def test_cli_refuses_a_malicious_checkpoint_in_one_line(tmp_path):
    from conftest import run_vsr

    marker = tmp_path / "pwned"
    path = _zip_checkpoint(tmp_path / "evil.pth", _payloads(marker)["os.system"])
    result = run_vsr("models", "import", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "posix.system" in result.stderr and "refusing" in result.stderr
    assert not marker.exists()


def test_zip_members_with_traversal_paths_are_refused(tmp_path):
    good = pickle.dumps({}, protocol=2)
    for name in ("../../etc/passwd", "/abs/data/0", "archive/../../x"):
        path = _zip_checkpoint(tmp_path / "t.pth", good, {name: b"x"})
        with pytest.raises(CheckpointError, match="unsafe path"):
            read_checkpoint(path)


@pytest.mark.parametrize("name", ["rrdb_x4_params_ema", "rrdb_x4_old_legacy"])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.97])
def test_truncated_checkpoints_fail_clearly(tmp_path, name, keep):
    data = (FIXTURES / f"{name}.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"truncated|damaged|corrupt"):
        state_dict_of(read_checkpoint(path), "cut")


@pytest.mark.parametrize("content", [b"", os.urandom(3000), b"hello, not a model\n"])
def test_files_that_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"empty|not a PyTorch checkpoint|corrupt|truncated"):
        read_checkpoint(path)


def _storage_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """``{"w": torch._utils._rebuild_tensor_v2(<FloatStorage of numel>, 0, size, stride, False, {})}``,
    in protocol-2 opcodes written by hand (no torch needed)."""

    def value(obj: object) -> bytes:  # a primitive's opcodes, without PROTO and STOP
        return pickle.dumps(obj, protocol=2)[2:-1]

    storage = b"(" + value("storage") + b"ctorch\nFloatStorage\n" + value("0") + value("cpu") + value(numel) + b"tQ"
    call = b"(" + storage + value(0) + value(size) + value(stride) + b"\x89}t"
    return b"\x80\x02}" + value("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + call + b"Rs."


def _bounded(func) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    func()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300, grown_mb
    return time.perf_counter() - start


def test_pickle_bombs_are_refused_in_bounded_time_and_memory(tmp_path):
    # a storage that declares 4 TB but holds 16 bytes; one that declares 8 GB
    path = _zip_checkpoint(tmp_path / "a.pth", _storage_pickle(10**12, (10**12,), (1,)), {"archive/data/0": b"0" * 16})
    path_b = _zip_checkpoint(tmp_path / "a2.pth", _storage_pickle(1 << 31, (4,), (1,)), {"archive/data/0": b"0" * 16})

    def huge_storage():
        with pytest.raises(CheckpointError, match="storage with a malformed size"):  # over 2**32 elements
            read_checkpoint(path)
        with pytest.raises(CheckpointError, match="declares 8589934592 bytes but holds 16"):
            read_checkpoint(path_b)

    # a tensor that claims 10^12 elements of a 4-element storage (stride 0)
    path2 = _zip_checkpoint(
        tmp_path / "b.pth", _storage_pickle(4, (10**6, 10**6), (0, 0)), {"archive/data/0": b"0" * 16}
    )

    def huge_view():
        with pytest.raises(CheckpointError, match="does not fit its storage"):
            state_dict_of(read_checkpoint(path2), "b")

    # a bytes object that declares 2^60 bytes
    path3 = _zip_checkpoint(tmp_path / "c.pth", b"\x80\x02\x8e" + struct.pack("<Q", 1 << 60) + b"x" * 10 + b".")

    def huge_bytes():
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            read_checkpoint(path3)

    # 300000 nested lists, and a 2^100-path DAG of shared lists
    depth = 300_000
    path4 = _zip_checkpoint(tmp_path / "d.pth", b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    dag: list = []
    for _ in range(100):
        dag = [dag, dag]
    path5 = _zip_checkpoint(tmp_path / "e.pth", pickle.dumps({"params": dag}, protocol=2))

    def nested():
        for p in (path4, path5):
            with pytest.raises(VsrError, match=r"not a state dict|no weights found"):
                state_dict_of(read_checkpoint(p), str(p))

    # a legacy file whose storage claims more than the file holds
    path6 = _legacy_checkpoint(tmp_path / "f.pth", _storage_pickle(10**12, (10**12,), (1,)))
    data = path6.read_bytes().replace(pickle.dumps([], protocol=2), pickle.dumps(["0"], protocol=2))
    path6.write_bytes(data + struct.pack("<q", 10**12) + b"0" * 64)

    def legacy_huge():
        with pytest.raises(CheckpointError, match=r"truncated|malformed size"):
            read_checkpoint(path6)

    for case in (huge_storage, huge_view, huge_bytes, nested, legacy_huge):
        assert _bounded(case) < 10


def test_numpy_scalars_load_but_cannot_touch_shared_state(tmp_path):
    payload = pickle.dumps({"lr": np.float64(0.5), "iter": np.int64(7), "order": np.dtype(">f4")}, protocol=2)
    loaded = read_checkpoint(_zip_checkpoint(tmp_path / "n.pth", payload))
    assert loaded == {"lr": 0.5, "iter": 7, "order": np.dtype(">f4")}
    assert np.dtype("f4").str == "<f4"  # numpy's shared dtype untouched
    # BUILD (set an object's state) on an allow-listed function is refused
    evil = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__Nsb."
    with pytest.raises(UnsafeCheckpoint, match="sets the state of a function"):
        read_checkpoint(_zip_checkpoint(tmp_path / "b.pth", evil))
