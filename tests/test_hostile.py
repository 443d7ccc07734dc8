"""Hostile model files and presets: refused (or accepted) within seconds, in bounded memory, with one clean line.

Every file is made here, a few bytes to a few MB, opcode by opcode where a
pickler would itself hang (a dict keyed by a 2**100-step tuple cannot even be
built in Python to be pickled).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, run_vsr, vsr_command, vsr_env

#: Runs a command and prints its peak RSS (kB) on the last stderr line: the child's own, not the test run's.
PEAK = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(r.returncode)\n"
)


def _measured(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float, int]:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", PEAK, *vsr_command(*args)], capture_output=True, text=True, env=vsr_env(), cwd=cwd
    )
    lines = run.stderr.strip().splitlines()
    peak_kb = int(lines[-1])
    run.stderr = "\n".join(lines[:-1])
    return run, time.perf_counter() - start, peak_kb


# --- pickles, opcode by opcode ---

PROTO = b"\x80\x02"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT


def _get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def _chain(depth: int, empty: bytes, pair: bytes) -> bytes:
    """x0 = empty; x(i+1) = (x(i), x(i)) sharing x(i): 2**depth leaves in ``depth`` steps."""
    ops = empty + _put(0) + b"0"
    for i in range(depth):
        ops += _get(i) + _get(i) + pair + _put(i + 1) + b"0"  # kept in the memo only
    return ops + _get(depth)


def _storage(key: str | bytes, numel: int) -> bytes:
    """A persistent id ('storage', FloatStorage, key, 'cpu', numel), loaded."""
    key_ops = _str(key) if isinstance(key, str) else key
    return b"(" + _str("storage") + _global("torch", "FloatStorage") + key_ops + _str("cpu") + _int(numel) + b"tQ"


def _int(value: int) -> bytes:
    if 0 <= value < 1 << 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<I", len(data)) + data  # LONG4


def _tensor(storage: bytes, shape: bytes, stride: bytes) -> bytes:
    """_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())."""
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + storage
        + _int(0)
        + shape
        + stride
        + b"\x89"  # NEWFALSE
        + _global("collections", "OrderedDict")
        + b")R"
        + b"tR"
    )


def _zip(path: Path, pickle_ops: bytes, storages: dict[str, bytes] | None = None, **compress: int) -> Path:
    """A torch.save-style zip: archive/data.pkl, byteorder, data/KEY (stored unless ``compress`` says)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", PROTO + pickle_ops + b".")
        archive.writestr("archive/byteorder", b"little", compress.get("byteorder", zipfile.ZIP_STORED))
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def _dict_of(items: list[tuple[str, bytes]]) -> bytes:
    return b"}(" + b"".join(_str(k) + v for k, v in items) + b"u"


def _safetensors(path: Path, header: dict, body: bytes) -> Path:
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + body)
    return path


def _srvgg_safetensors(path: Path, feat: int) -> Path:
    """A compact model whose first conv has ``feat`` outputs (1x1 kernels: a small file)."""
    shapes = {
        "body.0.weight": (feat, 3, 1, 1),
        "body.0.bias": (feat,),
        "body.1.weight": (feat,),
        "body.2.weight": (48, feat, 1, 1),
        "body.2.bias": (48,),
    }
    header, body = {}, b""
    for name, shape in shapes.items():
        data = np.zeros(shape, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    return _safetensors(path, header, body)


def _rrdb_safetensors(path: Path, blocks: int) -> Path:
    names = ["conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    names += [f"body.{b}.rdb{k}.conv{c}" for b in range(blocks) for k in (1, 2, 3) for c in range(1, 6)]
    header = {}
    for name in names:
        out = 3 if name == "conv_last" else 1
        for part, shape in (("weight", [out, 3 if name == "conv_first" else 1, 1, 1]), ("bias", [out])):
            header[f"{name}.{part}"] = {"dtype": "F32", "shape": shape, "data_offsets": [0, 4 * int(np.prod(shape))]}
    return _safetensors(path, header, b"\0" * 64)


def _hostile_files(tmp: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    # hangs
    files["shared-tuple dict key"] = _zip(tmp / "tuplekey.pth", b"}" + _chain(100, b")", b"\x86") + b"K\x01s")
    files["frozenset"] = _zip(tmp / "frozenset.pth", b"(" + _chain(100, b")", b"\x86") + b"\x91")
    lists = b"]" + _put(0) + b"0"  # l(i+1) = [l(i), l(i)]: str() of it takes 2**100 steps
    for i in range(100):
        lists += b"(" + _get(i) + _get(i) + b"l" + _put(i + 1) + b"0"
    lists += _get(100)
    files["shared-list storage key"] = _zip(
        tmp / "listkey.pth", _dict_of([("w", _tensor(_storage(lists, 1), b"(K\x01t", b"(K\x01t"))])
    )
    huge = _int(1 << (8 * 2_000_000))  # a 2 MB integer as a dimension
    files["2 MB integer in a shape"] = _zip(
        tmp / "hugeint.pth",
        _dict_of([("w", _tensor(_storage("0", 1), b"(" + huge + b"t", b"(K\x01t"))]),
        {"0": b"\0" * 4},
    )
    size_list = b"(" + b"K\x00" * 1_000_000 + b"l" + _put(7)
    calls = b"".join(_tensor(_storage("0", 1), _get(7), _get(7)) + b"0" for _ in range(2000))  # POP each
    files["million-long shape, many calls"] = _zip(tmp / "calls.pth", size_list + b"0" + calls + b"N", {"0": b"\0" * 4})
    # memory
    files["bzip2 member"] = _zip(
        tmp / "bzip.pth", _dict_of([]), byteorder=zipfile.ZIP_BZIP2
    )  # compressed: torch never writes that
    shared = _storage("0", 1 << 20)
    files["one storage, many keys"] = _zip(
        tmp / "manykeys.pth",
        _dict_of([(f"w{i}", _tensor(shared, b"(J\x00\x00\x10\x00t", b"(K\x01t")) for i in range(300)]),
        {"0": b"\0" * (4 << 20)},
    )
    encode = _global("_codecs", "encode") + b"(" + _str("x" * (1 << 20)) + _str("latin1") + b"tR0"
    files["copies inside the pickle"] = _zip(tmp / "codecs.pth", encode * 50 + b"N")
    overlapping = {
        f"w{i}": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 4 << 20]} for i in range(300)
    }  # every entry over the same 4 MB
    files["overlapping safetensors"] = _safetensors(tmp / "overlap.safetensors", overlapping, b"\0" * (4 << 20))
    param = tmp / "negative.param"
    param.write_text("7767517\n2 2\nInput in 0 1 in\nConvolution conv 1 1 in out 0=-64 1=3 5=1 6=-1728\n")
    (tmp / "negative.bin").write_bytes(b"\0" * 64)
    files["negative ncnn channels"] = param
    zero = tmp / "zero.param"
    zero.write_text("7767517\n2 2\nInput in 0 1 in\nConvolution conv 1 1 in out 0=0 1=0 5=1 6=0\n")
    (tmp / "zero.bin").write_bytes(b"\0" * 64)
    files["zero ncnn sizes"] = zero
    deep = tmp / "deep.safetensors"
    head = b"[" * 100_000 + b"]" * 100_000
    deep.write_bytes(struct.pack("<Q", len(head)) + head)
    files["deeply nested JSON"] = deep
    # shapes that would blow up the upscaler
    files["100000 features"] = _srvgg_safetensors(tmp / "wide.safetensors", 100_000)
    files["101 RRDB blocks"] = _rrdb_safetensors(tmp / "deep_rrdb.safetensors", 101)
    return files


def test_hostile_model_files_are_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    files = _hostile_files(tmp_path)
    _, _, baseline = _measured("models", "import", "/nonexistent.pth", cwd=tmp_path)
    report = []
    for what, path in files.items():
        run, seconds, peak = _measured("models", "import", str(path), "--name", "hostile", cwd=tmp_path)
        report.append(f"{what}: {seconds:.1f} s, peak RSS {peak // 1024} MB: {run.stderr.strip()[:150]}")
        lines = run.stderr.splitlines()
        assert run.returncode == 1, (what, run.stderr)
        assert len(lines) == 1 and lines[0].startswith("vsr: error: "), (what, run.stderr)
        assert "internal error" not in run.stderr and "Traceback" not in run.stderr, what
        assert seconds < 10, (what, seconds)
        assert peak - baseline < 500 * 1024, (what, peak // 1024, baseline // 1024)
    print("\n".join(report))
    assert "hostile" not in run_vsr("models").stdout


def test_names_from_a_file_cannot_forge_lines(tmp_path: Path) -> None:
    forged = "evil\nvsr: imported model-ok\x1b[2K"
    ops = _str(forged) + _str("x") + b"\x93"  # STACK_GLOBAL with a module name of our choosing
    path = _zip(tmp_path / "forged.pth", ops)
    run = run_vsr("models", "import", str(path))
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "\x1b" not in run.stderr, run.stderr
    assert "evil\\nvsr: imported model-ok\\x1b[2K" in run.stderr


def test_sigterm_stops_an_import_within_two_seconds(tmp_path: Path) -> None:
    slow = _zip(tmp_path / "slow.pth", b"N0" * 990_000 + _dict_of([]))  # just under the opcode limit: ~1 s
    proc = subprocess.Popen(
        vsr_command("models", "import", str(slow)), stderr=subprocess.PIPE, text=True, env=vsr_env()
    )
    time.sleep(0.7)  # the interpreter has started; the import is under way
    sent = time.perf_counter()
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert time.perf_counter() - sent < 2.0
    assert proc.returncode in (1, 143), err  # interrupted (128 + SIGTERM), or refused just before
    assert "Traceback" not in err


# --- presets ---


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[encode]\noptions = {flags = "+pass1", stats = "VICTIM"}\n', "not allowed in presets"),
        ('[encode]\noptions = {"x264-params" = "dump-yuv=VICTIM"}\n', "it names a file"),
        ("[upscale]\nbatch = 1000000000\n", "batch must be from 1 to 64"),
        ("[encode]\ncrf = -5\n", "crf -5 is outside 0..51"),
        ('[encode]\ntune = "fast-please"\n', "tune 'fast-please' is not one of"),
        ('[encode]\nspeed = "warp"\n', "speed 'warp' is not one of"),
        ("[encode]\noptions = " + "{a = " * 400 + "1" + "}" * 400 + "\n", "nested too deeply"),
    ],
    ids=["stats-file", "dump-yuv", "batch", "crf", "tune", "speed", "deep-toml"],
)
def test_presets_cannot_write_files_or_take_absurd_values(tmp_path: Path, sample_clip: Path, table: str, message: str):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    preset = tmp_path / "shared.toml"
    preset.write_text(table.replace("VICTIM", str(victim)))
    run = run_vsr("upscale", str(sample_clip), "-o", str(tmp_path / "out.mp4"), "--preset", str(preset), *TINY[:2])
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.toml", "victim.txt"]


def test_pickle_builders_make_what_a_real_reader_accepts(tmp_path: Path) -> None:
    """The opcode helpers above build a valid checkpoint when not hostile (so refusals are for the right reason)."""
    from vsr.models.pth import Tensor, read_checkpoint

    path = _zip(
        tmp_path / "ok.pth",
        _dict_of([("w", _tensor(_storage("0", 4), b"(K\x02K\x02t", b"(K\x02K\x01t"))]),
        {"0": np.arange(4, dtype="<f4").tobytes()},
    )
    state = read_checkpoint(path)
    assert isinstance(state["w"], Tensor)
    assert state["w"].numpy().tolist() == [[0, 1], [2, 3]]
