"""Writes official-format snapshot pickles without torch, for the loader's tests.

The stream names the same globals as a real snapshot (`torch_utils.persistence`,
`torch._utils`, `torch.storage`, `torch.<Type>Storage`, `dnnlib.util.EasyDict`): stand-in
modules under those names exist in `sys.modules` only while `dumps` runs. Storages are written
as `torch.save(storage, _use_new_zipfile_serialization=False)` writes them (what
`Storage.__reduce__` does), or in the zip format on request.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import pickle
import struct
import sys
import types
import zipfile
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_CLASS = {  # numpy dtype -> torch storage class name
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


def _stand_in(module: str, name: str) -> Any:
    """A function that pickles by reference as `module.name` (never called)."""
    def fn(*args):
        raise AssertionError(f"stand-in {module}.{name} called")
    fn.__module__, fn.__name__, fn.__qualname__ = module, name, name
    return fn


_STAND_INS: dict[str, dict[str, Any]] = {
    "torch": {name: type(name, (), {"__module__": "torch"}) for name in STORAGE_CLASS.values()},
    "torch._utils": {n: _stand_in("torch._utils", n)
                     for n in ("_rebuild_tensor_v2", "_rebuild_parameter")},
    "torch.storage": {"_load_from_bytes": _stand_in("torch.storage", "_load_from_bytes")},
    "torch_utils": {},
    "torch_utils.persistence": {"_reconstruct_persistent_obj": _stand_in(
        "torch_utils.persistence", "_reconstruct_persistent_obj")},
    "dnnlib": {},
    "dnnlib.util": {},
}


class EasyDict(dict):
    """Pickles as `dnnlib.util.EasyDict` (NEWOBJ + SETITEMS), like the official one."""


EasyDict.__module__ = "dnnlib.util"
_STAND_INS["dnnlib.util"]["EasyDict"] = EasyDict


_STAND_IN_MODULES = {}
for _name, _attrs in _STAND_INS.items():
    _STAND_IN_MODULES[_name] = types.ModuleType(_name)
    _STAND_IN_MODULES[_name].__dict__.update(_attrs)


@contextlib.contextmanager
def _stand_in_modules():
    """Installs the stand-ins in `sys.modules` (re-entrant); torch is never really imported.

    Where another test in the process imported the real torch (an optional cross-check
    dependency), its modules are set aside for the duration and put back afterwards, so the
    pickles made here never depend on test order.
    """
    if sys.modules.get("torch") is _STAND_IN_MODULES["torch"]:
        yield
        return
    real = {name: sys.modules.pop(name) for name in _STAND_IN_MODULES if name in sys.modules}
    sys.modules.update(_STAND_IN_MODULES)
    try:
        yield
    finally:
        for name in _STAND_IN_MODULES:
            del sys.modules[name]
        sys.modules.update(real)


def dumps(obj: Any, protocol: int = 4) -> bytes:
    """`pickle.dumps` with the official globals resolvable."""
    with _stand_in_modules():
        return pickle.dumps(obj, protocol=protocol)


# ---------------------------------------------------------------------- storages and tensors


class _StorageMarker:
    pass


class _StoragePickler(pickle.Pickler):
    def __init__(self, f, marker, pid):
        super().__init__(f, protocol=2)
        self._marker, self._pid = marker, pid

    def persistent_id(self, obj):
        return self._pid if obj is self._marker else None


def storage_bytes(data: np.ndarray, fmt: str = "legacy", key: str = "0") -> bytes:
    """The bytes `torch.save(storage)` writes for a 1-D storage holding `data`."""
    with _stand_in_modules():
        return _storage_bytes(np.ascontiguousarray(data).reshape(-1), fmt, key)


def _storage_bytes(data: np.ndarray, fmt: str, key: str) -> bytes:
    storage_type = _STAND_INS["torch"][STORAGE_CLASS[data.dtype]]
    raw = data.astype(data.dtype.newbyteorder("<")).tobytes()
    marker, out = _StorageMarker(), io.BytesIO()
    if fmt == "legacy":
        for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                           "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, out, protocol=2)
        pid = ("storage", storage_type, key, "cpu", data.size, None)
        _StoragePickler(out, marker, pid).dump(marker)
        pickle.dump([key], out, protocol=2)
        out.write(struct.pack("<q", data.size) + raw)
        return out.getvalue()
    assert fmt == "zip", fmt
    pkl = io.BytesIO()
    _StoragePickler(pkl, marker, ("storage", storage_type, key, "cpu", data.size)).dump(marker)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pkl.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr(f"archive/data/{key}", raw)
    return out.getvalue()


@dataclasses.dataclass(eq=False)
class Storage:
    """Pickles as `torch.storage._load_from_bytes(<torch.save bytes>)`."""

    data: np.ndarray
    fmt: str = "legacy"

    def __reduce__(self):
        load = _STAND_INS["torch.storage"]["_load_from_bytes"]
        return load, (storage_bytes(self.data, self.fmt),)


@dataclasses.dataclass(eq=False)
class Tensor:
    """Pickles as `torch._utils._rebuild_tensor_v2(...)`, wrapped in `_rebuild_parameter`
    for a parameter, as torch tensors and `nn.Parameter`s do."""

    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    parameter: bool = False

    def __reduce__(self):
        utils = _STAND_INS["torch._utils"]
        args = (self.storage, self.offset, self.size, self.stride, False,
                collections.OrderedDict())
        if self.parameter:
            return utils["_rebuild_parameter"], (
                dataclasses.replace(self, parameter=False), True, collections.OrderedDict())
        return utils["_rebuild_tensor_v2"], args


def tensor(array: Any, parameter: bool = False, fmt: str = "legacy") -> Tensor:
    """A contiguous tensor holding `array`."""
    array = np.array(array, order="C")  # Keeps 0-d arrays 0-d, unlike ascontiguousarray.
    stride = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(array.reshape(-1), fmt), 0, array.shape, stride, parameter)


# ---------------------------------------------------------------------- persistent modules


@dataclasses.dataclass(eq=False)
class Module:
    """Pickles as an official `torch_utils.persistence` module.

    `parameters` / `buffers` values: arrays (converted to tensors), `Tensor`s or None.
    """

    class_name: str
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    buffers: dict[str, Any] = dataclasses.field(default_factory=dict)
    modules: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_args: tuple = ()
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    non_persistent: set[str] = dataclasses.field(default_factory=set)
    module_src: str = "# source omitted\n"

    def __reduce__(self):
        def as_tensors(d, parameter):
            return {k: tensor(v, parameter) if isinstance(v, np.ndarray) else v
                    for k, v in d.items()}

        state = {
            "training": False,
            "_parameters": as_tensors(self.parameters, True),
            "_buffers": as_tensors(self.buffers, False),
            "_non_persistent_buffers_set": set(self.non_persistent),
            "_forward_hooks": collections.OrderedDict(),
            "_modules": dict(self.modules),
            **self.attrs,
            "_init_args": self.init_args,
            "_init_kwargs": self.init_kwargs,
        }
        meta = {"type": "class", "version": 6, "module_src": self.module_src,
                "class_name": self.class_name, "state": state}
        return _STAND_INS["torch_utils.persistence"]["_reconstruct_persistent_obj"], (meta,)


def dense(in_features: int, out_features: int, stylegan3_repo: bool = False) -> Module:
    """A `FullyConnectedLayer` as either repository pickles it (only the stylegan3 one stores
    `in_features`)."""
    rng = np.random.default_rng(in_features * 1000 + out_features)
    attrs = {"in_features": in_features} if stylegan3_repo else {}
    return Module(
        "FullyConnectedLayer",
        parameters={"weight": rng.standard_normal((out_features, in_features), np.float32),
                    "bias": np.zeros(out_features, np.float32)},
        init_args=(in_features, out_features), attrs=attrs)


def snapshot(**networks: Any) -> dict[str, Any]:
    """A training snapshot dict: `G`, `D`, `G_ema` default to small dense-only networks."""
    defaults = {"G": Module("Generator", modules={"fc": dense(4, 3)}, init_kwargs={"z_dim": 4}),
                "D": Module("Discriminator", modules={"fc": dense(3, 1)}),
                "augment_pipe": None, "training_set_kwargs": None}
    defaults["G_ema"] = defaults["G"]
    return {**defaults, **networks}
