"""Read PyTorch checkpoints (``.pth``) without torch, and without running their code.

A ``.pth`` file is a pickle, and unpickling an untrusted pickle with the
standard library (which is what ``torch.load`` did by default until 2.6) can
run any Python callable the file names: ``os.system``, ``builtins.eval``.
This reader unpickles with an allow-list instead. A global that the pickle
asks for is looked up in :data:`SAFE_GLOBALS`, whose values are *our* small
functions that build numpy arrays and dicts; any other name stops the load
with :class:`UnsafeCheckpoint` before anything runs. No object from the file
is ever called.

Two container formats exist:

- **zip** (``torch.save`` since PyTorch 1.6): ``<prefix>/data.pkl`` holds the
  object; storage ``key`` lies uncompressed at ``<prefix>/data/<key>``;
  ``<prefix>/byteorder`` says ``little`` or ``big``.
- **legacy** (older files; the original ESRGAN release): five pickles in a row
  (magic number, protocol version, system info, the object, the list of
  storage keys), then each storage as an 8-byte element count and raw data.

In both, a tensor is pickled as ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)`` and a storage as a persistent id
``("storage", <dtype>Storage, key, location, numel)``; tensors may be strided
views into a storage shared with others.

Everything the file declares (storage sizes, tensor extents, member names) is
checked against what the file actually holds before memory is allocated, so a
truncated, hostile or corrupt file is one clear :class:`CheckpointError` in
bounded time and memory.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from vsr.errors import VsrError

#: Largest ``data.pkl`` we unpickle: real checkpoints' are a few hundred kB.
MAX_PICKLE_BYTES = 64 << 20
#: Most memory an import may spend on tensor data, counting the storages read *and* every array made from them
#: (the largest real ESRGAN-family checkpoints hold about 67 MB of float32 weights, twice with params + params_ema).
MAX_IMPORT_BYTES = 256 << 20
#: Most opcodes in one pickle, and most calls it may make (a real state dict: a few thousand tensors).
MAX_PICKLE_OPS = 2_000_000
MAX_PICKLE_CALLS = 100_000
#: Tensors have at most this many dimensions, each at most this long.
MAX_DIMS = 8
MAX_DIM = 1 << 32
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointError(VsrError):
    """A checkpoint that cannot be read: truncated, corrupt, or not a PyTorch file."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint whose pickle names a callable outside the allow-list."""


#: Storage classes by the name torch pickles them under, as numpy dtypes (little-endian).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # no numpy bfloat16: upper halves of float32, widened below
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


class _Budget:
    """What one import has allocated for tensor data, capped at :data:`MAX_IMPORT_BYTES`."""

    def __init__(self) -> None:
        self.total = 0

    def spend(self, nbytes: int) -> None:
        self.total += nbytes
        if self.total > MAX_IMPORT_BYTES:
            raise CheckpointError(
                f"needs over {MAX_IMPORT_BYTES >> 20} MB for its tensors; not an ESRGAN-family model (or hostile)"
            )


@dataclass
class _Storage:
    """A storage: its type, declared element count, its elements once read, and the import's memory budget."""

    kind: _StorageType
    numel: int
    budget: _Budget
    data: np.ndarray | None = None


@dataclass
class Tensor:
    """A tensor as the checkpoint describes it; :meth:`numpy` copies it out of its storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def numpy(self) -> np.ndarray:
        """The tensor as a contiguous array (float32 for any floating type)."""
        data = self.storage.data
        if data is None:
            raise CheckpointError("tensor data missing (truncated file?)")
        count = math.prod(self.shape)  # small ints only (see _rebuild_tensor)
        if count:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
            if last >= data.size or count > data.size:
                raise CheckpointError(f"tensor of shape {self.shape} does not fit its storage of {data.size} elements")
        self.storage.budget.spend(count * 4)  # the float32 copy made below, counted per tensor (views share storage)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :] if count else data[:0],
            shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        array = np.ascontiguousarray(view)
        if self.storage.kind.name == "BFloat16Storage":
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(np.float32, copy=False) if array.dtype.kind == "f" else array


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Tensor:
    """``torch._utils._rebuild_tensor_v2``: a strided view into ``storage``."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("tensor without a storage")
    # types and sizes first: a 16 MB integer or a million-long "shape" must cost nothing
    if not (small_ints(size) and small_ints(stride) and len(size) == len(stride) and small_int(offset)):
        raise CheckpointError("tensor with a malformed shape, stride or offset")
    return Tensor(storage, offset, tuple(size), tuple(stride))


def small_int(value: Any) -> bool:
    return type(value) is int and 0 <= value < MAX_DIM


def small_ints(values: Any) -> bool:
    return type(values) in (tuple, list) and len(values) <= MAX_DIMS and all(small_int(v) for v in values)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """``torch._utils._rebuild_parameter``: a Parameter is its data."""
    return data


def _ordered_dict(*args: Any) -> dict[Any, Any]:
    if args:  # pickle builds OrderedDicts empty, then sets their items
        raise CheckpointError("unexpected OrderedDict arguments")
    return collections.OrderedDict()


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode``: how protocol-2 pickles write ``bytes`` (numpy scalars' few bytes, in checkpoints)."""
    if type(text) is not str or encoding != "latin1" or len(text) > 4096:
        raise CheckpointError("unexpected _codecs.encode call")
    return text.encode("latin1")


def _numpy_dtype(name: Any, *_: Any) -> np.dtype:
    dtype = np.dtype(name) if isinstance(name, str) and name.isalnum() else None
    if dtype is None or dtype.kind not in "biuf":
        raise UnsafeCheckpoint("numpy dtype that is not a plain number type")
    return dtype.newbyteorder("=")  # a copy, as numpy's own unpickling makes: BUILD then sets its byte order


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    """A numpy scalar (an iteration counter, a learning rate) from its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or dtype.hasobject or dtype.fields:
        raise UnsafeCheckpoint("numpy scalar that is not a plain number")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError("malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype)[0]


#: The only globals a checkpoint may name, mapped to what we build instead.
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle._Unpickler):
    """Allow-listed globals; storages handed to ``on_storage(kind, key, numel)``.

    The pure-Python unpickler, not the C one, so that ``BUILD`` (which sets an
    object's state) can be limited to the dicts that really carry state in
    checkpoints (``state_dict()._metadata``): a hostile pickle could otherwise
    set attributes on our allow-listed functions or on numpy dtypes. Pickles in
    checkpoints are small; the speed difference does not matter.
    """

    dispatch: ClassVar[dict[int, Callable[..., Any]]] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, on_storage: Callable[[_StorageType, str, int], _Storage]) -> None:
        super().__init__(file)
        self._on_storage = on_storage
        self.calls = 0

    def find_class(self, module: str, name: str) -> Any:
        found = SAFE_GLOBALS.get((module, name))
        if found is None:
            raise UnsafeCheckpoint(
                f"its pickle asks for {module}.{name}, which a weights file has no use for; "
                "refusing to load it (vsr never runs code from model files)"
            )
        return found

    def load_build(self) -> None:
        state, target = self.stack[-1], self.stack[-2] if len(self.stack) >= 2 else None
        plain_dtype = (  # numpy pickles a dtype as dtype(name) + its byte order: allow exactly that
            isinstance(target, np.dtype)
            and isinstance(state, tuple)
            and len(state) == 8
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
        )
        if not (isinstance(target, dict) or plain_dtype):
            kind = type(target).__name__
            raise UnsafeCheckpoint(f"its pickle sets the state of a {kind} object; refusing to load it")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build

    # Dict keys are hashed as they are set: a deep structure of shared tuples costs 2**depth there, inside
    # one C call that no signal interrupts. Checkpoints key dicts by short strings (and small ints).
    def _check_keys(self, items: list[Any]) -> None:
        for key in items[::2]:
            if not (type(key) is str and len(key) <= 4096) and not (type(key) is int and key.bit_length() <= 64):
                raise CheckpointError(f"dict key of type {type(key).__name__} in the pickle; not a checkpoint")

    def load_setitem(self) -> None:
        self._check_keys(self.stack[-2:])
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self) -> None:
        self._check_keys(self.stack)  # after MARK, the stack holds just the items
        pickle._Unpickler.load_setitems(self)

    def load_dict(self) -> None:
        self._check_keys(self.stack)
        pickle._Unpickler.load_dict(self)

    def load_reduce(self) -> None:
        self.calls += 1
        if self.calls > MAX_PICKLE_CALLS:
            raise CheckpointError(f"its pickle makes over {MAX_PICKLE_CALLS} calls; not a checkpoint")
        pickle._Unpickler.load_reduce(self)

    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.REDUCE[0]] = load_reduce

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            raise CheckpointError("unexpected persistent id in the pickle (not a tensor storage)")
        kind, key, _location, numel = pid[1:5]
        if not isinstance(kind, _StorageType):
            raise CheckpointError("storage of an unknown type")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views of the pre-1.0 format are not supported")
        if type(numel) is not int or not 0 <= numel < MAX_DIM:
            raise CheckpointError("storage with a malformed size")
        if type(key) not in (str, bytes) or len(key) > 256:
            raise CheckpointError("storage with a malformed key")
        return self._on_storage(kind, key.decode("ascii", "replace") if isinstance(key, bytes) else key, numel)


#: Opcodes that build sets, whose items are hashed (a shared-tuple chain hashes in 2**depth steps).
_SET_OPS = {"EMPTY_SET", "ADDITEMS", "FROZENSET"}


def _prescan(file: io.BytesIO) -> None:
    """Walk the next pickle's opcodes without building anything.

    The C unpickler allocates a bytes object of the *declared* length before
    reading it; walking the opcodes first refuses a length the file does not
    hold, so a hostile header costs nothing.
    """
    start = file.tell()
    try:
        for count, (op, _, _) in enumerate(pickletools.genops(file)):
            if op.name in _SET_OPS:
                raise CheckpointError("its pickle builds a set; checkpoints hold none")
            if count > MAX_PICKLE_OPS:
                raise CheckpointError(f"its pickle has over {MAX_PICKLE_OPS} operations; not a checkpoint")
    except (ValueError, EOFError, struct.error) as exc:
        raise CheckpointError(f"corrupt or truncated pickle ({exc})") from None
    finally:
        file.seek(start)


def _unpickle(file: io.BytesIO, on_storage: Callable[[_StorageType, str, int], _Storage]) -> Any:
    _prescan(file)
    try:
        return _Unpickler(file, on_storage).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
    except (RecursionError, MemoryError):
        raise CheckpointError("pickle too deeply nested or too large to be a checkpoint") from None


def _read_zip(fh: BinaryIO) -> Any:
    try:
        archive = zipfile.ZipFile(fh)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"damaged or truncated zip checkpoint ({exc})") from None
    for info in infos:
        parts = info.filename.replace("\\", "/").split("/")
        if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise CheckpointError(f"zip member with an unsafe path {info.filename!r}; refusing the file")
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError("a zip file, but not a PyTorch checkpoint (no single <name>/data.pkl)")
    prefix = pickles[0].filename[: -len("data.pkl")]
    by_name = {i.filename: i for i in infos}
    budget = _Budget()

    def read(info: zipfile.ZipInfo) -> bytes:
        # torch.save stores members uncompressed: anything else (a bzip2 "bomb" in a 6-byte member) is refused
        # before a byte is inflated, and a stored member's size is what the directory says
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            what = "encrypted" if info.flag_bits & 0x1 else f"compressed (method {info.compress_type})"
            raise CheckpointError(f"zip member {info.filename!r} is {what}; torch.save writes neither")
        if info.compress_size != info.file_size or info.file_size > MAX_IMPORT_BYTES:
            raise CheckpointError(f"zip member {info.filename!r} has an impossible size")
        try:
            return archive.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"damaged zip member {info.filename} ({exc})") from None

    byteorder = "little"
    if (order := by_name.get(prefix + "byteorder")) is not None and order.file_size < 16:
        byteorder = read(order).decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"unknown byte order {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def on_storage(kind: _StorageType, key: str, numel: int) -> _Storage:
        if key not in storages:
            info = by_name.get(f"{prefix}data/{key}")
            if info is None:
                raise CheckpointError(f"storage {key} is missing from the archive (truncated file?)")
            nbytes = numel * kind.dtype.itemsize
            if info.file_size != nbytes:
                raise CheckpointError(f"storage {key} declares {nbytes} bytes but holds {info.file_size}")
            budget.spend(nbytes)
            dtype = kind.dtype if byteorder == "little" else kind.dtype.newbyteorder(">")
            data = np.frombuffer(read(info), dtype=dtype).astype(kind.dtype, copy=False)  # no copy if little-endian
            storages[key] = _Storage(kind, numel, budget, data)
        return storages[key]

    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{pickles[0].file_size} bytes of pickle is not a model checkpoint")
    return _unpickle(io.BytesIO(read(pickles[0])), on_storage)


def _read_legacy(fh: BinaryIO) -> Any:
    """Pickles in a row (magic, protocol, system info, object, storage keys), then raw storages."""
    size = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    head = io.BytesIO(fh.read(min(size, MAX_PICKLE_BYTES)))

    def no_storage(*_: Any) -> _Storage:
        raise CheckpointError("storage outside the checkpoint's object")

    if _unpickle(head, no_storage) != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (a pickle without torch's magic number)")
    if _unpickle(head, no_storage) != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy PyTorch protocol version")
    sys_info = _unpickle(head, no_storage)
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise CheckpointError("big-endian legacy checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    budget = _Budget()

    def on_storage(kind: _StorageType, key: str, numel: int) -> _Storage:
        return storages.setdefault(key, _Storage(kind, numel, budget))

    obj = _unpickle(head, on_storage)  # tensors are read lazily: their data follows the pickles
    keys = _unpickle(head, no_storage)
    if not isinstance(keys, list) or not all(type(k) is str and len(k) <= 256 for k in keys):
        raise CheckpointError("its storage list is not a list of keys")
    if sorted(keys) != sorted(storages):
        raise CheckpointError("its storage list does not match its tensors")
    fh.seek(head.tell())
    for key in keys:
        storage = storages[key]
        nbytes = storage.numel * storage.kind.dtype.itemsize
        count = fh.read(8)
        if len(count) != 8 or struct.unpack("<q", count)[0] != storage.numel:
            raise CheckpointError(f"file is truncated or corrupt (storage {key} header)")
        if fh.tell() + nbytes > size:
            raise CheckpointError(f"file is truncated (storage {key} needs {nbytes} bytes)")
        budget.spend(nbytes)
        storage.data = np.frombuffer(fh.read(nbytes), dtype=storage.kind.dtype)
    return obj


def read_checkpoint(path: Path) -> Any:
    """The object a ``.pth`` file holds, with :class:`Tensor` for every tensor.

    Raises:
        UnsafeCheckpoint: the pickle names a callable outside the allow-list.
        CheckpointError: anything else wrong with the file.
    """
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
            fh.seek(0)
            if magic[:2] == b"PK":
                return _read_zip(fh)
            if magic[:1] == b"\x80":
                return _read_legacy(fh)
    except OSError as exc:
        raise VsrError(f"cannot read {path}: {exc.strerror or exc}") from None
    except CheckpointError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if not magic:
        raise CheckpointError(f"{path}: file is empty")
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip nor a pickle)")
