"""Bounded pieces shared by the torch-format readers (snapshots and metric weight files).

Both `flaxgan.convert.snapshot` (official `.pkl` snapshots) and `flaxgan.metrics.torchfile`
(TorchScript / `torch.save` files) decode torch data with a restricted unpickler and numpy. A
small hostile file must not make them allocate or work without bound, so everything here is
charged to one `Budget` per file, checked *before* the work is done:

- the pickle machine itself: the C unpickler grows its memo array to twice the largest index a
  PUT names (ten bytes can ask for gigabytes), so `RestrictedUnpickler` is the pure-Python
  unpickler, whose memo is a dict;
- constructor calls the unpickler makes (a memoised argument can be passed to thousands of
  calls): `Budget.charge` counts the entries / bytes each one copies;
- tensor storages (a deflated zip entry inflates to its declared size at most, and that size is
  checked first): `Budget.storage`, at most the file's size plus `SLACK_BYTES`;
- tensors, kept as `TensorView`s (storage, offset, size, stride) until the caller has checked
  their shapes: `materialise` copies one only if all tensors together stay within what the
  storages hold plus `SLACK_BYTES` (a stride-0 or overlapping view can otherwise ask for any
  size);
- walks over the unpickled data (shared references would be re-expanded exponentially):
  `Budget.visit` bounds depth and the number of visits; callers memoise by `id`.

Every refusal is a `FormatError`, one line without the file name (the caller adds it).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from flaxgan.errors import UserError

__all__ = [
    "Budget",
    "FormatError",
    "LEGACY_MAGIC",
    "LEGACY_PROTOCOL",
    "MAX_DEPTH",
    "MAX_VISITS",
    "RestrictedUnpickler",
    "is_index_tuple",
    "SLACK_BYTES",
    "STORAGE_DTYPES",
    "STORAGE_TYPES",
    "StorageSpec",
    "StorageType",
    "TensorView",
    "check_legacy_header",
    "materialise",
    "read_legacy_storages",
    "read_zip_entry",
    "rebuild_tensor",
    "storage_spec",
    "tensor_view",
    "zip_archive_prefix",
]

# torch.save's legacy stream starts with these two pickled ints.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage classes whose elements numpy represents exactly, little-endian as torch writes.
STORAGE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in [
        ("FloatStorage", "<f4"), ("DoubleStorage", "<f8"), ("HalfStorage", "<f2"),
        ("LongStorage", "<i8"), ("IntStorage", "<i4"), ("ShortStorage", "<i2"),
        ("CharStorage", "i1"), ("ByteStorage", "u1"), ("BoolStorage", "?"),
    ]
}



class StorageType(NamedTuple):
    """Stands in for a `torch.<Type>Storage` class (what `find_class` returns for one): only
    its element type matters."""

    name: str
    dtype: np.dtype


STORAGE_TYPES: dict[str, StorageType] = {
    name: StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()}

# Official networks nest ~6 levels of modules and a few of kwargs, and hold a few thousand
# objects; these bounds are far above that and far below what hurts.
MAX_DEPTH = 100
MAX_VISITS = 1_000_000
SLACK_BYTES = 64 << 20  # Allowance beyond the file's bytes: small broadcasts, headers.
_WORK_PER_FILE_BYTE = 2  # Constructor work (bytes copied; entries at 64) per byte of file.


class FormatError(UserError, ValueError):
    """A torch-format file is malformed or asks for more than it holds (one line, no path)."""


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


class Budget:
    """What reading one file may cost, charged before each allocation or walk step.

    Args:
      file_bytes: the file's size; the limits scale with it.
      slack: bytes allowed beyond the file's for storages, and beyond the storages for tensors.
      max_depth: deepest nesting a walk may reach.
      max_visits: most objects a walk may visit (all walks of the file together).
    """

    def __init__(self, file_bytes: int, slack: int = SLACK_BYTES, max_depth: int = MAX_DEPTH,
                 max_visits: int = MAX_VISITS):
        self.file_bytes, self.slack = int(file_bytes), int(slack)
        self.max_depth, self.max_visits = max_depth, max_visits
        self.work_limit = _WORK_PER_FILE_BYTE * self.file_bytes + self.slack
        self.work = self.storage_bytes = self.tensor_bytes = self.visits = 0

    def charge(self, units: int, what: str) -> None:
        """Constructor work: `units` entries or bytes copied by one call the pickle makes."""
        self.work += 1 + max(int(units), 0)
        if self.work > self.work_limit:
            raise FormatError(f"{what}: the pickle asks for more than {self.work_limit} units "
                              "of work (a memoised argument re-used without bound?)")

    def storage(self, nbytes: int, what: str) -> None:
        """A tensor storage of `nbytes` about to be decoded (inflated or read)."""
        limit = self.file_bytes + self.slack
        if nbytes < 0 or self.storage_bytes + nbytes > limit:
            raise FormatError(f"{what} of {_size(nbytes)} would bring the storages to more "
                              f"than the file can hold ({_size(limit)})")
        self.storage_bytes += nbytes

    def tensor(self, nbytes: int, what: str) -> None:
        """A tensor of `nbytes` about to be copied out of its storage."""
        limit = self.storage_bytes + self.slack
        if self.tensor_bytes + nbytes > limit:
            raise FormatError(
                f"{what} would take {_size(nbytes)}, bringing the tensors to more than their "
                f"storages hold ({_size(self.storage_bytes)} + {_size(self.slack)}): a "
                "broadcast (stride 0) or overlapping view")
        self.tensor_bytes += nbytes

    def expansion(self, count: int, what: str) -> None:
        """An object whose tree, shared references expanded, holds `count` objects: a consumer
        walking it naively (json, repr, a recursive copy) would visit that many."""
        if count > self.max_visits:
            raise FormatError(f"{what}: shared references expand to more than "
                              f"{self.max_visits} objects (a \"billion laughs\" pickle)")

    def visit(self, depth: int, what: str) -> None:
        """One object visited at nesting `depth` by a walk of the unpickled data."""
        self.visits += 1
        if depth > self.max_depth:
            raise FormatError(f"{what}: nested deeper than {self.max_depth} levels "
                              "(a cycle or a hostile pickle)")
        if self.visits > self.max_visits:
            raise FormatError(f"{what}: more than {self.max_visits} objects to walk "
                              "(shared references that expand without bound?)")


_ENTRY_UNITS = 64  # A container entry costs about as much memory as 64 bytes.


def _units(x: Any) -> int:
    """Bytes a constructor may copy from one argument (shallow; entries at 64 bytes each)."""
    if isinstance(x, bytes | bytearray | str):
        return len(x)
    if isinstance(x, list | tuple | dict | set | frozenset):
        return _ENTRY_UNITS * len(x)
    return 1


class _BoundedReader:
    """A stream whose `read(n)` refuses an `n` larger than the whole file: a pickle opcode may
    declare any length (BINBYTES8: 2**63), and `read` would allocate it before reading."""

    def __init__(self, file: Any, limit: int):
        self._read, self.readline, self._limit = file.read, file.readline, limit

    def read(self, n: int = -1) -> bytes:
        if n > self._limit:
            raise FormatError(f"the pickle declares an item of {n} bytes, more than the file "
                              f"holds ({self._limit})")
        return self._read(n)


class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, charging calls to `budget`; subclasses resolve globals in
    `find_class` (this one refuses all).

    The C unpickler resizes its memo array to twice the index a PUT names, before anything
    else: `N r <4 bytes> .` asks for up to 64 GiB. This one keeps the memo in a dict (reading
    is as fast for snapshots: ~10 ms for 20k opcodes). Calls (REDUCE, NEWOBJ, BUILD, ...) are
    charged the size of their arguments: a memoised big argument passed to many calls would
    otherwise copy it each time.

    Args:
      file: the stream.
      budget: this file's budget.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, budget: Budget):
        super().__init__(_BoundedReader(file, budget.file_bytes))
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refuses global {module[:100]}.{name[:100]}")


def _charging(opcode: bytes) -> None:
    load = pickle._Unpickler.dispatch[opcode[0]]

    def charged(self: RestrictedUnpickler) -> None:
        top = self.stack[-1] if self.stack else None  # The call's arguments / state.
        units = sum(map(_units, top)) if isinstance(top, tuple) else _units(top)
        self.budget.charge(units, f"pickle {load.__name__[5:].upper()}")
        load(self)

    RestrictedUnpickler.dispatch[opcode[0]] = charged


for _opcode in (pickle.REDUCE, pickle.BUILD, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ,
                pickle.INST):
    _charging(_opcode)


# ------------------------------------------------------------------------ zip entries


def read_zip_entry(archive: zipfile.ZipFile, name: str, budget: Budget, *,
                   nbytes: int | None = None, exact: bool = True, what: str = "zip entry"
                   ) -> bytes:
    """One member of `archive`, read (inflated) in bounded memory.

    Args:
      archive: an open zip.
      name: the member.
      budget: charged the bytes read, before reading.
      nbytes: how many bytes the caller expects (a storage's `numel * itemsize`); None: the
        member's declared size.
      exact: the member must hold exactly `nbytes` (else at least `nbytes`, only those read).
      what: how messages call the member.

    Raises:
      FormatError: missing member, a size other than expected, or over the budget.
      zipfile.BadZipFile: a damaged member (bad CRC, bad deflate stream).
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise FormatError(f"{what}: zip has no member {name[:200]!r}") from None
    want = info.file_size if nbytes is None else nbytes
    if info.file_size < want or (exact and info.file_size != want):
        raise FormatError(f"{what} {name[:200]!r} declares {info.file_size} bytes, "
                          f"expected {want}")
    budget.storage(want, what)  # Checked before anything is inflated.
    # ZipExtFile inflates in chunks and stops at the declared size, so at most `want` bytes
    # are ever held, whatever the deflate stream would expand to.
    with archive.open(info) as f:
        data = f.read(want)
        if exact and len(data) == want:
            f.read(1)  # Reaches the end, where zipfile checks the CRC.
    if len(data) != want:
        raise FormatError(f"{what} {name[:200]!r} holds {len(data)} bytes, expected {want}")
    return data


# ------------------------------------------------------------------------ tensors


class TensorView(NamedTuple):
    """`as_strided(storage, size, stride, offset)`, not yet copied (see `materialise`)."""

    storage: np.ndarray  # 1-D, the storage's dtype (little-endian).
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.size, dtype=object)) * self.storage.itemsize


def is_index_tuple(x: Any) -> bool:
    """A tuple of non-negative Python ints (a size or stride)."""
    return isinstance(x, tuple) and all(type(i) is int and i >= 0 for i in x)


def tensor_view(storage: Any, offset: Any, size: Any, stride: Any) -> TensorView:
    """Checks a tensor record against its storage, without allocating.

    Raises:
      FormatError: malformed record, or a view reaching outside its storage.
    """
    if isinstance(size, list):  # TorchScript writes sizes and strides as lists.
        size = tuple(size)
    if isinstance(stride, list):
        stride = tuple(stride)
    ok = (isinstance(storage, np.ndarray) and storage.ndim == 1 and type(offset) is int
          and offset >= 0 and is_index_tuple(size) and is_index_tuple(stride)
          and len(size) == len(stride) and len(size) <= 64)
    if not ok:
        raise FormatError("malformed tensor record")
    if all(size):  # Bounds-check the last element the view would touch.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise FormatError(f"tensor of size {size} overruns its storage of "
                              f"{storage.size} elements")
    else:
        offset = 0
    return TensorView(storage, offset, size, stride)


def materialise(view: TensorView, budget: Budget, what: str = "tensor") -> np.ndarray:
    """A fresh C-ordered, native-byte-order copy of `view`, charged to `budget` first."""
    budget.tensor(view.nbytes, f"{what} of size {view.size}")
    storage = view.storage
    strided = np.lib.stride_tricks.as_strided(
        storage[view.offset:], shape=view.size,
        strides=[s * storage.itemsize for s in view.stride], writeable=False)
    return strided.astype(storage.dtype.newbyteorder("="), order="C", copy=True)


# ------------------------------------------------------------------------ storages


class StorageSpec(NamedTuple):
    """A persistent id `('storage', StorageType, key, location, numel[, view_metadata])`:
    the storage's element type, its key (zip member / legacy record) and element count."""

    dtype: np.dtype
    key: str
    numel: int


def storage_spec(pid: Any, what: str = "tensor storage") -> StorageSpec:
    """Checks a storage's persistent id (the unpickler's `find_class` resolved its type to a
    `StorageType`).

    Raises:
      FormatError: not a storage id, or a storage view (torch < 0.4 only).
    """
    ok = (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
          and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
          and type(pid[4]) is int and pid[4] >= 0)
    if not ok:
        raise FormatError(f"{what} has an unknown persistent id {str(pid)[:80]}")
    if len(pid) == 6 and pid[5] is not None:
        raise FormatError(f"{what} is a view (unsupported pre-0.4 torch format)")
    return StorageSpec(pid[1].dtype.newbyteorder("<"), pid[2], pid[4])


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorView:
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` as a checked,
    not yet copied `TensorView` (`requires_grad`, hooks and metadata do not affect values)."""
    return tensor_view(storage, offset, size, stride)


def check_legacy_header(load: Callable[[], Any], what: str = "tensor storage") -> None:
    """The first three pickles of a legacy `torch.save` stream: magic, protocol, sys_info.

    Args:
      load: unpickles the stream's next pickle.
      what: how messages call the stream.

    Raises:
      FormatError: not a torch.save stream, or big-endian storages.
    """
    if load() != LEGACY_MAGIC or load() != LEGACY_PROTOCOL:
        raise FormatError(f"{what} is not a torch.save stream")
    sys_info = load()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise FormatError(f"{what} is not little-endian")


def read_legacy_storages(stream: io.BufferedIOBase, keys: Any,
                         specs: Mapping[str, StorageSpec], budget: Budget, *,
                         in_memory: bytes | None = None, what: str = "tensor storage"
                         ) -> dict[str, np.ndarray]:
    """The storage records after a legacy stream's pickles: per key an int64 element count,
    then the raw little-endian elements.

    Args:
      stream: positioned after the key list.
      keys: the key list the stream pickled (each a key of `specs`).
      specs: the storages the pickles declared, by key.
      budget: charged each storage's bytes before they are read.
      in_memory: the whole stream's bytes when `stream` is a `BytesIO` over them: storages
        are then views of these bytes, not copies.
      what: how messages call the stream.

    Returns:
      `{key: 1-D array [numel] of the spec's dtype}`.

    Raises:
      FormatError: an undeclared key, a count other than declared, truncation, the budget.
    """
    if not isinstance(keys, list):
        raise FormatError(f"{what} has no storage key list")
    arrays = {}
    for key in keys:
        spec = specs.get(key) if isinstance(key, str) else None
        if spec is None:
            raise FormatError(f"{what} lists an undeclared key {str(key)[:80]!r}")
        head = stream.read(8)
        if len(head) != 8:
            raise FormatError(f"{what} is truncated")
        (count,) = struct.unpack("<q", head)
        if count != spec.numel:
            raise FormatError(f"{what} {key!r} holds {count} elements, declared {spec.numel}")
        nbytes = count * spec.dtype.itemsize
        if in_memory is not None and stream.tell() + nbytes > len(in_memory):
            raise FormatError(f"{what} is truncated")
        budget.storage(nbytes, f"{what} {key!r}")  # At most the file's size: checked first.
        if in_memory is not None:
            start = stream.tell()
            raw: Any = memoryview(in_memory)[start:start + nbytes]
            stream.seek(start + len(raw))
        else:
            raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise FormatError(f"{what} is truncated")
        arrays[key] = np.frombuffer(raw, spec.dtype)
    return arrays


def zip_archive_prefix(archive: zipfile.ZipFile, budget: Budget,
                       what: str = "tensor storage zip") -> str:
    """`<archive>/` of a torch zip (TorchScript or `torch.save` >= 1.6): the folder holding
    the one `data.pkl`, whose storages are `<archive>/data/<key>`; checks `byteorder`.

    Raises:
      FormatError: no single `<archive>/data.pkl`, or big-endian storages.
    """
    names = archive.namelist()
    pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pkls) != 1:
        raise FormatError(f"{what} has no single <archive>/data.pkl")
    prefix = pkls[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in names:  # Absent before torch 2.1: little.
        if read_zip_entry(archive, f"{prefix}byteorder", budget, what=what).strip() != b"little":
            raise FormatError(f"{what} is not little-endian")
    return prefix
