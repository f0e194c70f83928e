"""Reads official stylegan2-ada-pytorch / stylegan3 snapshot pickles without running them.

An official `network-snapshot-*.pkl` is `pickle.dump(dict(G=..., D=..., G_ema=...,
augment_pipe=..., training_set_kwargs=...))` of `torch_utils.persistence` modules. Each module
pickles as `_reconstruct_persistent_obj(meta)`, where `meta` holds the source code of its
defining Python module (which the official loader `exec`s), the class name and the module's
`__dict__` (`_parameters`, `_buffers`, `_modules`, `_init_args`, `_init_kwargs`, ...). Tensors
pickle as `_rebuild_tensor_v2(storage, offset, size, stride, ...)` with the storage as
`torch.storage._load_from_bytes(<torch.save of the storage>)`; that inner stream is torch's
*legacy* format (five pickles, then raw little-endian storage records) in every snapshot seen,
and the newer zip format is accepted too.

`load_snapshot` maps the few globals such a file may name to plain-data constructors and
refuses every other global, so nothing in the file runs: not the embedded source, not a
`__reduce__` payload. Persistent modules become `ModuleRecord`s; other values stay plain data.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from flaxgan.convert import torch_io
from flaxgan.convert.torch_io import Budget, FormatError, StorageSpec, TensorView

__all__ = ["ExpectedShapes", "ModuleRecord", "SnapshotError", "load_snapshot"]

_MAX_MESSAGE = 300  # Characters of untrusted text quoted in an error message.

_PERSISTENCE_VERSION = 6  # `torch_utils.persistence._version`, the same in both repositories.
_NETWORKS = ("G", "D", "G_ema")


class SnapshotError(FormatError):
    """A snapshot or state_dict file cannot be read; the message is one line naming the file."""


# `(network key, class_name, init_kwargs)` -> the official state_dict shapes those constructor
# arguments imply (dotted name -> shape), or None when unknown; see `load_snapshot`.
ExpectedShapes = Callable[[str, str, dict[str, Any]], Mapping[str, tuple[int, ...]] | None]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ModuleRecord:
    """One official persistent module, as plain data.

    Attributes:
      class_name: official `module.Class`, e.g. `training.networks.Generator` (see
        `_official_module` for how the module is identified); the bare class name when no
        official module matches.
      init_args: positional constructor arguments.
      init_kwargs: keyword constructor arguments (EasyDicts as dicts, numpy scalars as Python
        scalars).
      parameters: trainable tensors of the whole module tree by official dotted name
        (`synthesis.b32.conv0.weight`), official layouts, read-only arrays; None entries skipped.
      buffers: persistent buffers likewise (`mapping.w_avg`, `...resample_filter`, ...).
    """

    class_name: str
    init_args: tuple
    init_kwargs: dict[str, Any]
    parameters: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]

    def __repr__(self) -> str:
        return (f"ModuleRecord({self.class_name}, {len(self.parameters)} parameters, "
                f"{len(self.buffers)} buffers, init_kwargs={self.init_kwargs!r})")


def load_snapshot(path: str | os.PathLike, expected_shapes: ExpectedShapes | None = None
                  ) -> dict[str, Any]:
    """Reads an official snapshot `.pkl` without executing anything in it.

    The cost is bounded by the file's size (see `flaxgan.convert.torch_io`): storages may not
    hold more than the file, tensors more than their storages (plus 64 MiB for broadcasts),
    walks visit each object once, at most 100 levels deep and a million objects in all.

    Args:
      path: the snapshot file.
      expected_shapes: optional; called for each network (`G`, `D`, `G_ema`) with its key,
        official class name and constructor kwargs, returns the official shapes those kwargs
        imply (or None). A tensor of another shape is refused before it is copied.

    Returns:
      The pickled top-level dict: `G`, `D`, `G_ema` as `ModuleRecord`s; `augment_pipe` (a
      `ModuleRecord` or None) and `training_set_kwargs` (dict or None), None when absent, as the
      official `legacy.load_network_pkl` fills them; any other entries as plain data.

    Raises:
      SnapshotError: one line naming `path` and what is wrong (unreadable, not a pickle,
        truncated, a global outside the official set, bad tensor storage, wrong structure,
        more memory or work than the file's size allows, a shape its kwargs do not imply).
    """
    return read_pickle_file(
        path, _SnapshotUnpickler,
        lambda raw, budget: _Interpreter(budget, expected_shapes).snapshot(raw),
        what="snapshot pickle")


def read_pickle_file(path: str | os.PathLike, unpickler: Callable[[Any, Budget], Any],
                     interpret: Callable[[Any, Budget], Any], what: str) -> Any:
    """One pickle file through a restricted `unpickler(file, budget)` and `interpret(raw,
    budget)`, with the file's size as the work budget and every failure as one line.

    Raises:
      SnapshotError: `<path>: <problem>` (empty, trailing data, unreadable, out of memory,
        anything a corrupt or hostile stream provokes, or what `interpret` refuses).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            budget = Budget(os.fstat(f.fileno()).st_size)
            if not budget.file_bytes:
                raise SnapshotError("empty file")
            raw = unpickler(f, budget).load()
            if f.read(1):
                raise SnapshotError("unexpected data after the pickle")
        return interpret(raw, budget)
    except FormatError as e:
        raise SnapshotError(_one_line(f"{name}: {e}")) from None
    except OSError as e:
        raise SnapshotError(_one_line(f"{name}: cannot read ({e.strerror or e})")) from None
    except MemoryError:
        raise SnapshotError(f"{name}: not a readable {what} (out of memory)") from None
    except Exception as e:  # Anything a corrupt or hostile stream provokes in the unpickler.
        raise SnapshotError(_one_line(f"{name}: not a readable {what} ({_describe(e)})")
                            ) from None


# ------------------------------------------------------------------------ errors


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 2 * _MAX_MESSAGE else text[: 2 * _MAX_MESSAGE] + "..."


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text[:_MAX_MESSAGE]}" if text else type(e).__name__


def _quote(name: str) -> str:
    return repr(name[:_MAX_MESSAGE])


# ------------------------------------------------------------------------ tensor storages


class _StorageUnpickler(torch_io.RestrictedUnpickler):
    """The pickles inside `torch.save` of one storage: storage classes and ids, nothing else."""

    def __init__(self, stream: io.BufferedIOBase, specs: dict[str, StorageSpec],
                 budget: Budget):
        super().__init__(stream, budget)
        self._specs = specs

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in torch_io.STORAGE_TYPES:
            return torch_io.STORAGE_TYPES[name]
        raise SnapshotError(f"tensor storage refuses global {_quote(f'{module}.{name}')}")

    def persistent_load(self, pid: Any) -> StorageSpec:
        spec = torch_io.storage_spec(pid)
        if self._specs.setdefault(spec.key, spec) != spec:
            raise SnapshotError(f"tensor storage {spec.key!r} is declared twice differently")
        return spec


def _storage_from_bytes(data: bytes, *, budget: Budget | None = None) -> np.ndarray:
    """`torch.storage._load_from_bytes`: the bytes of `torch.save(storage)` -> 1-D array,
    charged to `budget` (default: one of its own, sized by `data`)."""
    if not isinstance(data, bytes):
        raise SnapshotError(f"tensor storage is a {type(data).__name__}, not bytes")
    budget = Budget(len(data)) if budget is None else budget
    try:
        if data.startswith(b"PK\x03\x04"):
            return _storage_from_zip(data, budget)
        return _storage_from_legacy(data, budget)
    except FormatError:
        raise
    except Exception as e:
        raise SnapshotError(f"bad tensor storage ({_describe(e)})") from None


def _storage_from_legacy(data: bytes, budget: Budget) -> np.ndarray:
    """torch's legacy format: magic, protocol, sys_info, object, keys; then per key an int64
    element count and the raw elements (viewed in `data`, not copied)."""
    stream = io.BytesIO(data)
    specs: dict[str, StorageSpec] = {}

    def load() -> Any:
        return _StorageUnpickler(stream, specs, budget).load()

    torch_io.check_legacy_header(load)
    root, keys = load(), load()
    if not isinstance(root, StorageSpec) or not isinstance(keys, list):
        raise SnapshotError("tensor storage stream does not hold a single storage")
    arrays = torch_io.read_legacy_storages(stream, keys, specs, budget, in_memory=data)
    if stream.read(1):
        raise SnapshotError("tensor storage has unexpected trailing bytes")
    if root.key not in arrays:
        raise SnapshotError(f"tensor storage {root.key!r} has no data")
    return arrays[root.key]


def _storage_from_zip(data: bytes, budget: Budget) -> np.ndarray:
    """torch's zip format: `<archive>/data.pkl` + raw storages `<archive>/data/<key>`, each
    member's size checked before it is inflated."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        prefix = torch_io.zip_archive_prefix(archive, budget)
        pkl = torch_io.read_zip_entry(archive, f"{prefix}data.pkl", budget,
                                      what="tensor storage")
        root = _StorageUnpickler(io.BytesIO(pkl), {}, budget).load()
        if not isinstance(root, StorageSpec):
            raise SnapshotError("tensor storage zip does not hold a single storage")
        raw = torch_io.read_zip_entry(archive, f"{prefix}data/{root.key}", budget,
                                      nbytes=root.numel * root.dtype.itemsize,
                                      what="tensor storage")
    return np.frombuffer(raw, root.dtype)


def _rebuild_parameter(data: Any, *_: Any) -> TensorView | np.ndarray:
    """`torch.nn.Parameter(data, requires_grad)`: just the data."""
    if not isinstance(data, TensorView | np.ndarray):
        raise SnapshotError("malformed parameter record")
    return data


# ------------------------------------------------------------------------ numpy values


class _NdarrayType:
    """Stands in for `numpy.ndarray` as the `subtype` argument of `_reconstruct` only."""


_NDARRAY = _NdarrayType()


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """`numpy.core.multiarray._reconstruct`: an empty ndarray that BUILD then fills."""
    del shape, dtype  # Replaced by the state BUILD passes to `ndarray.__setstate__`.
    if subtype is not _NDARRAY:
        raise SnapshotError("numpy array record of a type other than numpy.ndarray")
    return np.ndarray((0,), np.uint8)


def _numpy_scalar(dtype: Any, data: Any) -> np.generic:
    """`numpy.core.multiarray.scalar`: one element of a non-object dtype from its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise SnapshotError("malformed numpy scalar record")
    if len(data) != dtype.itemsize:
        raise SnapshotError("numpy scalar record of the wrong size")
    return np.frombuffer(data, dtype, count=1)[0]


def _numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """`numpy.core.numeric._frombuffer`, how pickle protocol 5 (Python >= 3.14's default)
    writes contiguous arrays: raw bytes, dtype, shape, order."""
    ok = (isinstance(buf, bytes | bytearray) and isinstance(dtype, np.dtype)
          and not dtype.hasobject and torch_io.is_index_tuple(shape) and order in ("C", "F"))
    if not ok:
        raise SnapshotError("malformed numpy array record")
    return np.frombuffer(buf, dtype).reshape(shape, order=order).copy()


# ------------------------------------------------------------------------ persistent modules


class _Persistent(NamedTuple):
    """A `_reconstruct_persistent_obj(meta)` call, recorded instead of executed."""

    class_name: str
    state: dict


def _reconstruct_persistent_obj(meta: Any) -> _Persistent:
    ok = (isinstance(meta, dict) and meta.get("type") == "class"
          and isinstance(meta.get("class_name"), str) and isinstance(meta.get("state"), dict)
          and isinstance(meta.get("module_src"), str))
    if not ok:
        raise SnapshotError("malformed persistent object record")
    if meta.get("version") != _PERSISTENCE_VERSION:
        raise SnapshotError(f"persistent object of format version {meta.get('version')!r}, "
                            f"expected {_PERSISTENCE_VERSION}")
    return _Persistent(meta["class_name"], meta["state"])  # `module_src` is never executed.


# The globals an official snapshot names, each mapped to a plain-data constructor. Beyond those
# in the reference files: `dnnlib.util.EasyDict` (training_set_kwargs, nested kwargs),
# `builtins.set` (how Python < 3.8's protocol 3 writes `_non_persistent_buffers_set`), numpy 1.x
# module paths, and numpy's protocol-5 array record.
_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): torch_io.rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): dict,
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
}


class _SnapshotUnpickler(torch_io.RestrictedUnpickler):
    """Resolves only `_GLOBALS`; the stream has no persistent ids (pickle refuses them)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _GLOBALS[module, name]
        except (KeyError, TypeError):
            found = None
        if found is None:
            raise SnapshotError(f"refuses global {_quote(f'{module}.{name}')} "
                                "(not part of an official snapshot)")
        if found is _storage_from_bytes:  # Storages are charged to this file's budget.
            return functools.partial(_storage_from_bytes, budget=self.budget)
        return found


# ------------------------------------------------------------------------ interpretation

_MAX_MODULES = 10_000  # Per network; official ones have a few hundred.
_SCALARS = (str, bytes, int, float, complex, np.dtype)


class _Interpreter:
    """Unpickled data -> plain data, checked as `legacy.load_network_pkl`.

    Pickle memoises shared objects, so a few bytes can reference one list from two places at
    each of 64 levels; a naive walk expands that to 2**64 visits. Each object is therefore
    converted once (memoised by `id`; the unpickled tree keeps every object alive), depth and
    visits are charged to the file's budget, and tensors are copied only after their shapes
    are checked.
    """

    def __init__(self, budget: Budget, expected_shapes: ExpectedShapes | None):
        self._budget, self._expected_shapes = budget, expected_shapes
        self._memo: dict[int, Any] = {}
        self._sizes: dict[int, int] = {}  # Objects in each converted container, expanded.

    def snapshot(self, raw: Any) -> dict[str, Any]:
        """The unpickled top level -> the snapshot dict."""
        if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
            raise SnapshotError(f"top level is a {type(raw).__name__}, not a dict of networks")
        snapshot = {}
        for key, value in raw.items():
            if key in _NETWORKS and isinstance(value, _Persistent):
                snapshot[key] = self._memoised(value, lambda v=value, k=key: self._record(v, k, 1))
            else:
                snapshot[key] = self.plain(value, 1)
        for key in _NETWORKS:
            if key not in snapshot:
                raise SnapshotError(f"has no network {key!r} (has {sorted(snapshot)})")
            if not isinstance(snapshot[key], ModuleRecord):
                raise SnapshotError(f"{key!r} is a {type(snapshot[key]).__name__}, "
                                    "not a network")
        snapshot.setdefault("augment_pipe", None)
        snapshot.setdefault("training_set_kwargs", None)
        return snapshot

    def _memoised(self, x: Any, convert: Callable[[], Any]) -> Any:
        key = id(x)
        if key not in self._memo:
            self._memo[key] = convert()
        return self._memo[key]

    def plain(self, x: Any, depth: int) -> Any:
        """Persistent modules as records, numpy scalars as Python, tensors as arrays."""
        if isinstance(x, np.generic):  # Before _SCALARS: np.float64 is a float.
            return x.item()
        if x is None or isinstance(x, _SCALARS):
            return x
        if isinstance(x, np.ndarray) and x.dtype.hasobject:
            raise SnapshotError("object arrays are not snapshot data")
        return self._memoised(x, lambda: self._convert(x, depth))

    def _convert(self, x: Any, depth: int) -> Any:
        self._budget.visit(depth, "snapshot data")
        if isinstance(x, _Persistent):
            return self._record(x, None, depth)
        if isinstance(x, TensorView):
            return self._array(x, "tensor")
        if isinstance(x, set | frozenset | np.ndarray):
            return x
        if isinstance(x, dict):
            out: Any = {k: self.plain(v, depth + 1) for k, v in x.items()}
        elif isinstance(x, list):
            out = [self.plain(v, depth + 1) for v in x]
        elif isinstance(x, tuple):
            out = tuple(self.plain(v, depth + 1) for v in x)
        else:
            raise SnapshotError(f"unexpected {type(x).__name__} value in the snapshot")
        # Shared children are converted once but a consumer may expand them: bound the tree.
        children = x.values() if isinstance(x, dict) else x
        self._sizes[id(x)] = size = 1 + sum(self._sizes.get(id(v), 1) for v in children)
        self._budget.expansion(size, "snapshot data")
        return out

    def _array(self, x: TensorView | np.ndarray, what: str) -> np.ndarray:
        """A tensor copied out of its storage once (read-only), within the budget."""
        if isinstance(x, np.ndarray):
            return x

        def copy() -> np.ndarray:
            array = torch_io.materialise(x, self._budget, what)
            array.flags.writeable = False  # Records are frozen; copy to modify.
            return array

        return self._memoised(x, copy)

    def _record(self, root: _Persistent, key: str | None, depth: int) -> ModuleRecord:
        """A persistent module (and its sub-module tree) -> `ModuleRecord`; `key` names a
        top-level network, whose tensor shapes `expected_shapes` may check."""
        state = root.state
        init_args, init_kwargs = state.get("_init_args"), state.get("_init_kwargs")
        if not isinstance(init_args, tuple) or not isinstance(init_kwargs, dict):
            raise SnapshotError(f"{root.class_name} has no constructor arguments "
                                "(_init_args / _init_kwargs)")
        modules = self._modules(root, depth)
        module = _official_module(modules)
        class_name = f"{module}.{root.class_name}" if module else root.class_name
        init_args, init_kwargs = self.plain(init_args, depth + 1), self.plain(init_kwargs,
                                                                              depth + 1)
        parameters: dict[str, Any] = {}
        buffers: dict[str, Any] = {}
        for path, obj in modules:
            params, bufs, _ = _module_dicts(obj, path)
            transient = obj.state.get("_non_persistent_buffers_set") or set()
            prefix = path.partition(".")[2]  # Names are relative to the root module.
            prefix = prefix + "." if prefix else ""
            parameters.update(_tensors(params, prefix, path, "parameter"))
            bufs = {k: v for k, v in bufs.items() if k not in transient}  # As `state_dict()`.
            buffers.update(_tensors(bufs, prefix, path, "buffer"))
        if key is not None and self._expected_shapes is not None:
            expected = self._expected_shapes(key, class_name, init_kwargs)
            _check_shapes(key, {**parameters, **buffers}, expected or {})
        where = key or root.class_name
        return ModuleRecord(
            class_name=class_name, init_args=init_args, init_kwargs=init_kwargs,
            parameters={n: self._array(v, f"{where}.{n}") for n, v in parameters.items()},
            buffers={n: self._array(v, f"{where}.{n}") for n, v in buffers.items()})

    def _modules(self, root: _Persistent, depth: int) -> list[tuple[str, _Persistent]]:
        """Pre-order `(dotted path, module)` over a module tree; None sub-modules skipped. A
        sub-module shared by two parents appears under both names, as in `state_dict()`; at
        most `_MAX_MODULES`."""
        out: list[tuple[str, _Persistent]] = []

        def walk(obj: _Persistent, path: str, level: int) -> None:
            self._budget.visit(level, path[:200])
            if len(out) >= _MAX_MODULES:
                raise SnapshotError(f"{root.class_name} has more than {_MAX_MODULES} "
                                    "sub-modules (shared modules re-expanded?)")
            out.append((path, obj))
            for name, sub in _module_dicts(obj, path)[2].items():
                if sub is None:
                    continue
                if not isinstance(sub, _Persistent):
                    raise SnapshotError(f"{path}.{name} is a {type(sub).__name__}, "
                                        "not a module")
                walk(sub, f"{path}.{name}", level + 1)

        walk(root, root.class_name, depth)
        return out


def _check_shapes(key: str, tensors: Mapping[str, Any],
                  expected: Mapping[str, tuple[int, ...]]) -> None:
    """Refuses, before anything is copied, a tensor whose shape the kwargs do not imply."""
    for name, value in tensors.items():
        want = expected.get(name)
        if want is not None and tuple(value.shape) != tuple(want):
            raise SnapshotError(f"{key}.{name} has shape {tuple(value.shape)}, its "
                                f"constructor arguments imply {tuple(want)}")


def _module_dicts(obj: _Persistent, path: str) -> tuple[dict, dict, dict]:
    """`_parameters`, `_buffers`, `_modules` of one module's state, checked."""
    dicts = tuple(obj.state.get(k) for k in ("_parameters", "_buffers", "_modules"))
    for key, d in zip(("_parameters", "_buffers", "_modules"), dicts, strict=True):
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise SnapshotError(f"{path}: module state has no {key} dict")
    return dicts


def _tensors(d: dict, prefix: str, path: str, kind: str) -> dict[str, Any]:
    """Tensor entries (views, not yet copied) by dotted name; None entries skipped."""
    out = {}
    for name, value in d.items():
        if value is None:
            continue
        ok = isinstance(value, TensorView) or (
            isinstance(value, np.ndarray) and not value.dtype.hasobject)
        if not ok:
            raise SnapshotError(f"{path}.{name}: {kind} is a {type(value).__name__}, "
                                "not a tensor")
        out[prefix + name] = value
    return out


# The snapshot names a class but not its Python module (persistence stores only the module's
# source, which is not run here). The official modules leave distinct marks in module state:
# only StyleGAN3 has `SynthesisInput`; the stylegan3 repository's `FullyConnectedLayer` (also
# used by its `networks_stylegan2`) stores `in_features`, stylegan2-ada-pytorch's does not.
_MODULE_OF_CLASS = {
    "SynthesisInput": "training.networks_stylegan3",
    "AugmentPipe": "training.augment",
}


def _official_module(modules: list[tuple[str, _Persistent]]) -> str | None:
    """The official module defining a class, from its module tree (pre-order, root first);
    None if unknown."""
    for _, obj in modules:
        if obj.class_name in _MODULE_OF_CLASS:
            return _MODULE_OF_CLASS[obj.class_name]
    dense = [obj.state for _, obj in modules if obj.class_name == "FullyConnectedLayer"]
    if not dense:
        return None
    if all("in_features" in state for state in dense):
        return "training.networks_stylegan2"
    return "training.networks"

