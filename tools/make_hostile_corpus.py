r"""Generates the hostile-file corpus for flaxgan's torch-format loaders (issue 14, item 1).

    python tools/make_hostile_corpus.py --out=/tmp/hostile [--scale=full]

Every case is built from the vendored official snapshot `tests/data/reference/sg2_uncond32.pkl`
(round-tripped through editable stand-ins, see `reference_tree`) or from scratch with the test
helpers of `tests/flaxgan/convert/official_pickle.py`; nothing is vendored.
`tests/flaxgan/convert/test_hostile_corpus.py` builds them in a temporary folder at `scale
="test"` (files of a few MB, built in about a second) and checks each ends in bounded time and
memory with a one-line error naming the file, or loads correctly. `--scale=full` makes the sizes
of the issue (a 3 GiB deflate bomb, 16384x16384x3 stride-0 views, 64-level shared lists).

Cases (`CASES`): `snapshot` ones are read with `flaxgan.convert.load_snapshot` (and
`flaxgan.sample.load`), `torchfile` ones with `flaxgan.metrics.torchfile.read_torch_file`, `tf`
ones (official TensorFlow snapshots, edited from the vendored `TF_REFERENCE` / `TF_V1_REFERENCE`
with `tests/flaxgan/convert/tf_pickle.py`) with `flaxgan.sample.load`, which reads them with
`flaxgan.convert.tf_snapshot` and converts them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import os
import pathlib
import pickle
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from tests.flaxgan.convert import official_pickle as op  # noqa: E402
from tests.flaxgan.convert import tf_pickle  # noqa: E402

REFERENCE = ROOT / "tests/data/reference/sg2_uncond32.pkl"
TF_REFERENCE = ROOT / "tests/data/reference_tf_stylegan2/tf_sg2_e_orig_gray16.pkl"
TF_V1_REFERENCE = ROOT / "tests/data/reference_stylegan1/sg1_16_gray_linear_variants.pkl"
# The embedded build source of `tf_build_source_payload`: creates this file if ever executed.
PAYLOAD_MARKER = pathlib.Path("/tmp/flaxgan-hostile-tf-build-source-ran")
SCALES = {  # What `--scale` changes: bomb sizes (the refusals do not depend on them).
    "test": dict(laughs=64, dag=40, view=(4096, 4096, 3), deflate=256 << 20, memo=1 << 30),
    "full": dict(laughs=64, dag=40, view=(16384, 16384, 3), deflate=3 << 30, memo=0x7FFFFFF0),
}


# ---------------------------------------------------------------------- the reference, editable


@dataclasses.dataclass(eq=False)
class Persistent:
    """A `_reconstruct_persistent_obj(meta)` record; pickles back to the same call."""

    meta: dict

    @property
    def state(self) -> dict:
        return self.meta["state"]

    def __reduce__(self):
        return op._STAND_INS["torch_utils.persistence"]["_reconstruct_persistent_obj"], (
            self.meta,)


@dataclasses.dataclass(eq=False)
class RawStorage:
    """`torch.storage._load_from_bytes(data)` with the original bytes."""

    data: bytes

    def __reduce__(self):
        return op._STAND_INS["torch.storage"]["_load_from_bytes"], (self.data,)


class _ReferenceUnpickler(pickle.Unpickler):
    """Reads the (trusted, vendored) reference into `Persistent` / `op.Tensor` / `RawStorage`."""

    _MAP = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persistent,
        ("torch.storage", "_load_from_bytes"): RawStorage,
        ("torch._utils", "_rebuild_tensor_v2"):
            lambda storage, offset, size, stride, *_: op.Tensor(storage, offset, size, stride),
        ("torch._utils", "_rebuild_parameter"):
            lambda t, *_: dataclasses.replace(t, parameter=True),
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("dnnlib.util", "EasyDict"): op.EasyDict,
        ("builtins", "set"): set,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._MAP:
            return self._MAP[module, name]
        if module.split(".")[0] == "numpy":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


def reference_tree(path: pathlib.Path = REFERENCE) -> dict[str, Any]:
    """The reference snapshot as editable objects that `op.dumps` writes back equivalently."""
    with open(path, "rb") as f:
        return _ReferenceUnpickler(f).load()


def module(tree: dict, dotted: str) -> Persistent:
    """`module(tree, 'G_ema.synthesis.b32')`."""
    key, *names = dotted.split(".")
    node = tree[key]
    for name in names:
        node = node.state["_modules"][name]
    return node


def _splice(data: bytes, marker: str, opcodes: bytes) -> bytes:
    """Replaces the pickled string `marker` (protocol 3: no frames) by other opcodes that push
    one object."""
    raw = marker.encode()
    old = b"X" + struct.pack("<I", len(raw)) + raw
    assert data.count(old) == 1, marker
    return data.replace(old, opcodes)


# ---------------------------------------------------------------------- storages and zips


def stride0(size: tuple[int, ...], parameter: bool = False) -> op.Tensor:
    """A 1-element float32 storage viewed with stride 0 as `size`."""
    return op.Tensor(op.Storage(np.ones(1, np.float32)), 0, size, (0,) * len(size), parameter)


def zero_deflate(nbytes: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
    """A raw deflate stream of `nbytes` zeros and its CRC-32, built in O(nbytes / chunk) work:
    after a full flush, each chunk of zeros compresses to the same bytes."""
    assert nbytes % chunk == 0 and nbytes >= 3 * chunk
    zeros, c = bytes(chunk), zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    middle = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    last = c.compress(zeros) + c.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(nbytes // chunk):
        crc = zlib.crc32(zeros, crc)
    return first + middle * (nbytes // chunk - 2) + last, crc


def write_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from `(name, payload, method, uncompressed size, crc)` members, written by hand
    so that a deflated payload need not be inflated (< 4 GiB each, no zip64)."""
    out, central = io.BytesIO(), []
    for name, payload, method, size, crc in members:
        raw, offset = name.encode(), out.tell()
        fields = (20, 0, method, 0, 0, crc, len(payload), size, len(raw), 0)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + raw + payload)
        central.append(struct.pack("<IH", 0x02014B50, 20) + struct.pack("<HHHHHIIIHH", *fields)
                       + struct.pack("<HHHII", 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                          out.tell() - start, start, 0))
    return out.getvalue()


def _stored(name: str, payload: bytes) -> tuple[str, bytes, int, int, int]:
    return name, payload, zipfile.ZIP_STORED, len(payload), zlib.crc32(payload)


def zip_storage_bytes(dtype_name: str, numel: int, member: tuple) -> bytes:
    """`torch.save(storage)` in the zip format, with a given `data/0` member."""
    with op._stand_in_modules():
        pid = ("storage", op._STAND_INS["torch"][dtype_name], "0", "cpu", numel)
        pkl = io.BytesIO()
        op._StoragePickler(pkl, marker := op._StorageMarker(), pid).dump(marker)
    return write_zip([_stored("archive/data.pkl", pkl.getvalue()),
                      _stored("archive/byteorder", b"little"), member])


@dataclasses.dataclass(eq=False)
class Raw:
    """Pickles as `torch.storage._load_from_bytes(data)` for hand-made storage bytes."""

    data: bytes

    def __reduce__(self):
        return op._STAND_INS["torch.storage"]["_load_from_bytes"], (self.data,)


# ---------------------------------------------------------------------- torch.save files


@dataclasses.dataclass(frozen=True)
class ZipStorage:
    """A float32 storage of a `torch.save` zip, pickled as its persistent id."""

    key: str
    numel: int


@dataclasses.dataclass(eq=False)
class ZipTensor:
    """A tensor of a `torch.save` zip (`read_torch_file`): storage key, numel, view."""

    key: str
    numel: int
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def __reduce__(self):
        return op._STAND_INS["torch._utils"]["_rebuild_tensor_v2"], (
            ZipStorage(self.key, self.numel), self.offset, self.size, self.stride, False,
            collections.OrderedDict())


class _TorchSavePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, ZipStorage):
            return ("storage", op._STAND_INS["torch"]["FloatStorage"], obj.key, "cpu",
                    obj.numel)
        return None


def torch_save_zip(tree: Any, storages: dict[str, tuple], pickle_bytes: bytes | None = None
                   ) -> bytes:
    """A `torch.save` zip of `tree` (float32 `ZipTensor`s) with `data/<key>` members
    `storages[key]` (`write_zip` tuples); `pickle_bytes` replaces `data.pkl`."""
    if pickle_bytes is None:
        with op._stand_in_modules():
            pkl = io.BytesIO()
            _TorchSavePickler(pkl, protocol=2).dump(tree)
            pickle_bytes = pkl.getvalue()
    members = [_stored("archive/data.pkl", pickle_bytes), _stored("archive/byteorder", b"little")]
    members += [(f"archive/data/{k}", *v[1:]) for k, v in storages.items()]
    return write_zip(members)


def _float_member(key: str, values: np.ndarray) -> tuple:
    return _stored(f"archive/data/{key}", values.astype("<f4").tobytes())


# ---------------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One file of the corpus.

    Attributes:
      name: file stem.
      reader: 'snapshot', 'torchfile' or 'tf'.
      expect: regex the one-line error must contain, or None: the file must load (for
        snapshots: with the reference's tensors; for TF snapshots: as `TF_REFERENCE` loads).
      build: `scale dict -> file bytes`.
      about: what the file does.
    """

    name: str
    reader: str
    expect: str | None
    build: Callable[[dict], bytes]
    about: str


def _laughs(kind: str, levels: int) -> Any:
    node: Any = []
    for _ in range(levels):
        node = {"kind": kind, "a": node, "b": node} if kind == "dict" else (
            (node, node) if kind == "tuple" else [node, node])
    return node


def _with_kwargs(extra: dict) -> Callable[[dict], bytes]:
    def build(scale: dict) -> bytes:
        tree = reference_tree()
        tree["G_ema"].state["_init_kwargs"].update(
            {k: v(scale) if callable(v) else v for k, v in extra.items()})
        return op.dumps(tree)
    return build


def _module_dag(scale: dict) -> bytes:
    tree = reference_tree()
    node = op.Module("Leaf")
    for _ in range(scale["dag"]):
        node = op.Module("Node", modules={"a": node, "b": node})
    module(tree, "G_ema.synthesis").state["_modules"]["dag"] = node
    return op.dumps(tree)


def _cycle_module(scale: dict) -> bytes:
    tree = reference_tree()
    block = module(tree, "G_ema.synthesis.b32")
    block.state["_modules"]["again"] = block
    return op.dumps(tree)


def _cycle_list(scale: dict) -> bytes:
    tree, loop = reference_tree(), []
    loop.append(loop)
    tree["G_ema"].state["_init_kwargs"]["loop"] = loop
    return op.dumps(tree)


def _deep_list(scale: dict) -> bytes:
    tree = reference_tree()
    tree["deep"] = "@DEEP@"
    depth = 100_000  # Unshared: 2 bytes a level; a naive recursive walk overflows the stack.
    return _splice(op.dumps(tree, protocol=3), "@DEEP@", b"]" * depth + b"a" * (depth - 1))


def _wide_list(scale: dict) -> bytes:
    tree = reference_tree()
    tree["wide"] = "@WIDE@"
    return _splice(op.dumps(tree, protocol=3), "@WIDE@", b"](" + b"N" * 1_100_000 + b"e")


def _memo_index(scale: dict) -> bytes:
    """The reference (protocol 3: explicit memo indices) whose result is also PUT at a huge
    memo index: the C unpickler allocates a memo array of twice that many pointers."""
    data = op.dumps(reference_tree(), protocol=3)
    assert data.endswith(b".")
    return data[:-1] + b"r" + struct.pack("<I", scale["memo"]) + b"."


def _replace_tensor(name: str, make: Callable[[dict], Any]) -> Callable[[dict], bytes]:
    def build(scale: dict) -> bytes:
        tree = reference_tree()
        owner, _, leaf = name.rpartition(".")
        mod = module(tree, owner)
        where = "_parameters" if leaf in mod.state["_parameters"] else "_buffers"
        mod.state[where][leaf] = make(scale)
        return op.dumps(tree)
    return build


def _add_buffers(make: Callable[[dict], dict]) -> Callable[[dict], bytes]:
    def build(scale: dict) -> bytes:
        tree = reference_tree()
        module(tree, "G_ema.synthesis").state["_buffers"].update(make(scale))
        return op.dumps(tree)
    return build


def _overlapping(scale: dict) -> dict:
    storage = op.Storage(np.zeros(1 << 20, np.float32))  # 4 MiB, written once.
    return {f"view{i}": op.Tensor(storage, 0, (1 << 20,), (1,)) for i in range(100)}


def _deflate_member(nbytes: int, name: str = "archive/data/0") -> tuple:
    payload, crc = zero_deflate(nbytes)
    return name, payload, zipfile.ZIP_DEFLATED, nbytes, crc


def _deflate_storage(honest: bool) -> Callable[[dict], bytes]:
    def make(scale: dict) -> op.Tensor:
        nbytes = scale["deflate"]
        numel = nbytes // 4 if honest else 16
        raw = zip_storage_bytes("FloatStorage", numel, _deflate_member(nbytes))
        return op.Tensor(Raw(raw), 0, (numel,), (1,))
    return _add_buffers(lambda scale: {"bomb": make(scale)})


def _reduce_amplify(scale: dict) -> bytes:
    """One 4 MiB bytes object passed (memoised) to numpy's `_frombuffer` 2000 times."""
    shared = bytes(4 << 20)

    class FromBuffer:
        def __reduce__(self):
            return _frombuffer(), (shared, np.dtype(np.float32), (1 << 20,), "C")

    tree = reference_tree()
    tree["G_ema"].state["_init_kwargs"]["copies"] = [FromBuffer() for _ in range(2000)]
    return op.dumps(tree)


def _frombuffer() -> Any:
    from numpy._core import numeric  # The global numpy >= 2 pickles contiguous arrays with.
    return numeric._frombuffer


def _dict_amplify(scale: dict) -> bytes:
    """One 100k-pair list passed (memoised) to `collections.OrderedDict` 1000 times."""
    pairs = [(i, None) for i in range(100_000)]

    class Dict:
        def __reduce__(self):
            return collections.OrderedDict, (pairs,)

    tree = reference_tree()
    tree["G_ema"].state["_init_kwargs"]["dicts"] = [Dict() for _ in range(1000)]
    return op.dumps(tree)


def _binbytes8(scale: dict) -> bytes:
    return b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"xx."


# torch.save files (read_torch_file).


def _ts_legit(scale: dict) -> bytes:
    values = np.arange(12, dtype=np.float32)
    tree = collections.OrderedDict(w=ZipTensor("0", 12, 0, (3, 4), (4, 1)),
                                   t=ZipTensor("0", 12, 1, (2, 2), (1, 4)))
    return torch_save_zip(tree, {"0": _float_member("0", values)})


def _ts_stride0(scale: dict) -> bytes:
    size = scale["view"]
    tree = collections.OrderedDict((f"w{i}", ZipTensor("0", 1, 0, size, (0,) * len(size)))
                                   for i in range(8))
    return torch_save_zip(tree, {"0": _float_member("0", np.ones(1, np.float32))})


def _ts_deflate(scale: dict) -> bytes:
    n = scale["deflate"]
    return torch_save_zip(collections.OrderedDict(w=ZipTensor("0", n // 4, 0, (n // 4,), (1,))),
                          {"0": _deflate_member(n)})


def _ts_laughs(scale: dict) -> bytes:
    node: Any = collections.OrderedDict(w=ZipTensor("0", 1, 0, (1,), (1,)))
    for _ in range(scale["laughs"]):
        node = collections.OrderedDict(a=node, b=node)
    return torch_save_zip(node, {"0": _float_member("0", np.ones(1, np.float32))})


def _ts_memo(scale: dict) -> bytes:
    pkl = b"\x80\x02Nr" + struct.pack("<I", scale["memo"]) + b"0}."  # An empty state_dict.
    return torch_save_zip(None, {}, pickle_bytes=pkl)


def _legacy_numel(scale: dict) -> bytes:
    """A legacy `torch.save` stream whose storage declares 2**40 elements (data absent)."""
    huge = 1 << 40
    with op._stand_in_modules():
        out = io.BytesIO()
        for header in (op.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                              "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, out, protocol=2)
        marker = op._StorageMarker()
        pid = ("storage", op._STAND_INS["torch"]["FloatStorage"], "0", "cpu", huge, None)
        op._StoragePickler(out, marker, pid).dump(collections.OrderedDict(w=marker))
        pickle.dump(["0"], out, protocol=2)
    return out.getvalue() + struct.pack("<q", huge) + bytes(64)


# Official TensorFlow snapshots (`(G, D, Gs)` of `dnnlib.tflib.network.Network`s).


class _Call:
    """Pickles as a call of `fn(*args)` (REDUCE): what a hostile pickle would run."""

    def __init__(self, fn: Callable, *args: Any):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _HugeArray:
    """A numpy array record claiming 2**40 float32 elements backed by 4 bytes."""

    def __reduce__(self):
        from numpy._core import multiarray
        return multiarray._reconstruct, (np.ndarray, (0,), b"b"), (
            1, (1 << 20, 1 << 20), np.dtype(np.float32), False, bytes(4))


class _ArgsNetwork:
    """A Network record created by calling the class with arguments (REDUCE)."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce__(self):
        return tf_pickle.Network, ("evil",), self.state


def _tf(edit: Callable[[tuple], Any], reference: pathlib.Path = TF_REFERENCE
        ) -> Callable[[dict], bytes]:
    """The TF reference `(G, D, Gs)` after `edit(tree)` (in place, or returning the new top)."""
    return lambda scale: tf_pickle.edited(reference, edit)


def _networks(tree: tuple) -> list:
    """Every Network of a `(G, D, Gs)` tree, components included."""
    nets = []
    for net in tree:
        nets += [net, *net.state.get("components", {}).values()]
    return nets


def _tf_set(index: int, key: str, value: Any) -> Callable[[tuple], None]:
    def edit(tree: tuple) -> None:
        tree[index].state[key] = value
    return edit


def _tf_kwarg(index: int, key: str, value: Any) -> Callable[[tuple], None]:
    def edit(tree: tuple) -> None:
        tree[index].state["static_kwargs"][key] = value
    return edit


def _tf_synthesis_var(name: str, value: Any) -> Callable[[tuple], None]:
    """Sets (None: removes) one variable of Gs's synthesis network."""
    def edit(tree: tuple) -> None:
        synthesis = tree[2].component("synthesis")
        variables = synthesis.variables()
        if value is None:
            del variables[name]
        else:
            variables[name] = value
        synthesis.set_variables(variables)
    return edit


def _tf_payload(tree: tuple) -> None:
    source = f"open({str(PAYLOAD_MARKER)!r}, 'w').write('ran')\ndef G_main(*a, **k): pass\n"
    for net in _networks(tree):
        net.state["build_module_src"] = source


def _tf_cycle(tree: tuple) -> None:
    tree[2].state["components"]["synthesis"] = tree[2]


def _tf_shared_d(tree: tuple) -> None:
    tree[1].state["name"] = "G_synthesis"
    tree[2].state["components"]["synthesis"] = tree[1]


def _tf_args_network(tree: tuple) -> tuple:
    return tree[0], tree[1], _ArgsNetwork(tree[2].state)


def _tf_state_list(tree: tuple) -> tuple:
    return tree[0], tree[1], tf_pickle.Network(["not", "a", "dict"])


def _tf_v1_missing(tree: tuple) -> None:
    variables = tree[2].variables()
    del variables["dlatent_avg"]
    tree[2].set_variables(variables)


def _tf_mixed_versions(tree: tuple) -> tuple:
    return tree[0], tf_pickle.read(TF_V1_REFERENCE)[1], tree[2]


_TF_CONV = "16x16/Conv1/weight"

CASES = [
    # Legitimate files: must load, with the reference's tensors.
    Case("legit_roundtrip", "snapshot", None, lambda s: op.dumps(reference_tree()),
         "the reference, re-pickled through the editable stand-ins"),
    Case("legit_memo_index", "snapshot", None, _memo_index,
         "the reference after a PUT at memo index 2**30 (C unpickler: 16 GiB memo array)"),
    Case("legit_small_broadcast", "snapshot", None,
         _add_buffers(lambda s: {"extra": stride0((64, 64))}),
         "the reference plus a 1-element storage viewed with stride 0 as 64x64"),
    Case("legit_torch_save", "torchfile", None, _ts_legit,
         "a torch.save zip: two views of one storage"),
    # (a) shared references and deep nesting.
    Case("laughs_lists", "snapshot", "expand to more than", _with_kwargs(
        {"laughs": lambda s: _laughs("list", s["laughs"])}),
        "G_ema kwargs: lists referencing the previous level twice, 64 levels"),
    Case("laughs_dicts", "snapshot", "expand to more than", _with_kwargs(
        {"laughs": lambda s: _laughs("dict", s["laughs"])}), "the same with dicts"),
    Case("laughs_tuples", "snapshot", "expand to more than", _with_kwargs(
        {"laughs": lambda s: _laughs("tuple", s["laughs"])}), "the same with tuples"),
    Case("laughs_modules", "snapshot", "more than 10000 sub-modules", _module_dag,
         "a DAG of persistent modules 40 deep (each level's two sub-modules are one)"),
    Case("cycle_list", "snapshot", "nested deeper than", _cycle_list,
         "a list containing itself in G_ema's kwargs"),
    Case("cycle_module", "snapshot", "malformed persistent object", _cycle_module,
         "a module that is its own sub-module (pickle calls its constructor half-built)"),
    Case("deep_list", "snapshot", "nested deeper than", _deep_list,
         "100000 nested lists (unshared)"),
    Case("wide_list", "snapshot", "expand to more than", _wide_list,
         "one list of 1.1 million Nones"),
    # (b) memory bombs.
    Case("stride0_parameter", "snapshot", "stride 0|imply", _replace_tensor(
        "G_ema.synthesis.b32.torgb.weight", lambda s: stride0(s["view"], parameter=True)),
        "a parameter: 1-element storage viewed with stride 0 as 16384x16384x3 (full scale)"),
    Case("stride0_eight", "snapshot", "stride 0", _add_buffers(
        lambda s: {f"bomb{i}": stride0(s["view"]) for i in range(8)}),
        "eight such buffers"),
    Case("overlapping_views", "snapshot", "overlapping view", _add_buffers(_overlapping),
         "one 4 MiB storage viewed whole by 100 buffers (400 MiB)"),
    Case("deflate_bomb", "snapshot", "more than the file can hold", _deflate_storage(True),
         "a zip storage of 3 GiB of deflated zeros (full scale), declared as such"),
    Case("deflate_bomb_undeclared", "snapshot", "declares .* bytes, expected 64",
         _deflate_storage(False),
         "a zip storage declaring 16 elements whose member inflates to 3 GiB (full scale)"),
    Case("reduce_amplify", "snapshot", "units of work", _reduce_amplify,
         "one 4 MiB bytes passed 2000 times to numpy's _frombuffer (8 GiB of copies)"),
    Case("dict_amplify", "snapshot", "units of work", _dict_amplify,
         "one 100k-pair list passed 1000 times to OrderedDict (1e8 entries)"),
    Case("binbytes8_huge", "snapshot", "more than the file holds", _binbytes8,
         "BINBYTES8 declaring 1 TiB in a 14-byte file"),
    # torch.save / TorchScript files.
    Case("torch_save_stride0", "torchfile", "stride 0", _ts_stride0,
         "eight 1-element storages viewed with stride 0 as 16384x16384x3 (full scale)"),
    Case("torch_save_deflate_bomb", "torchfile", "more than the file can hold", _ts_deflate,
         "a storage member of 3 GiB of deflated zeros (full scale)"),
    Case("torch_save_laughs", "torchfile", "expand to more than|objects to walk", _ts_laughs,
         "nested state_dicts referencing the previous level twice, 64 levels"),
    Case("torch_save_memo_index", "torchfile", None, _ts_memo,
         "data.pkl with a PUT at memo index 2**30, then an empty state_dict"),
    Case("legacy_numel_huge", "torchfile", "truncated|more than the file", _legacy_numel,
         "a legacy torch.save stream declaring a storage of 2**40 floats"),
    # Official TensorFlow snapshots.
    Case("tf_legit_roundtrip", "tf", None, _tf(lambda t: None),
         "the TF StyleGAN2 reference, re-pickled"),
    Case("tf_build_source_payload", "tf", None, _tf(_tf_payload),
         "every Network's build_module_src writes a file when executed (it must never be)"),
    Case("tf_global_os_system", "tf", r"refuses global '(os|posix|nt)\.system'",
         _tf(_tf_kwarg(2, "payload", _Call(os.system, "true"))),
         "Gs's static_kwargs hold a call of os.system"),
    Case("tf_global_exec", "tf", r"refuses global 'builtins\.exec'",
         _tf(_tf_kwarg(2, "payload", _Call(exec, "pass"))),
         "Gs's static_kwargs hold a call of exec"),
    Case("tf_unknown_build_func", "tf", "unknown build function 'G_evil'",
         _tf(_tf_set(2, "build_func_name", "G_evil")), "Gs built by an unknown function"),
    Case("tf_unsupported_build_func", "tf", "unsupported build function 'D_stylegan'",
         _tf(_tf_set(1, "build_func_name", "D_stylegan")),
         "D of StyleGAN2 configs B-D (progressive growing)"),
    Case("tf_wrong_synthesis", "tf", "'G_synthesis_stylegan_revised', expected "
         "'G_synthesis_stylegan2'", _tf(lambda t: t[2].component("synthesis").state.update(
             build_func_name="G_synthesis_stylegan_revised")),
         "Gs with the synthesis network of configs B-D"),
    Case("tf_missing_variable", "tf", r"synthesis\.b16\.conv1\.weight' is missing",
         _tf(_tf_synthesis_var(_TF_CONV, None)), "Gs without one convolution weight"),
    Case("tf_misshaped_variable", "tf", r"synthesis\.b16\.conv1\.weight' has shape",
         _tf(_tf_synthesis_var(_TF_CONV, np.zeros((3, 3, 12, 13), np.float32))),
         "Gs with a convolution weight of the wrong shape"),
    Case("tf_unexpected_variable", "tf", "unexpected variable 'G_synthesis/evil'",
         _tf(_tf_synthesis_var("evil", np.zeros(1 << 20, np.float32))),
         "Gs with an extra 4 MiB variable"),
    Case("tf_huge_array", "tf", "not a readable TF snapshot",
         _tf(_tf_synthesis_var(_TF_CONV, _HugeArray())),
         "a variable whose numpy record claims 2**40 elements backed by 4 bytes"),
    Case("tf_object_array", "tf", "dtype object",
         _tf(_tf_synthesis_var(_TF_CONV, np.array([None, "x"], dtype=object))),
         "a variable of Python objects"),
    Case("tf_laughs_kwargs", "tf", "expand to more than",
         lambda s: tf_pickle.edited(TF_REFERENCE, _tf_kwarg(2, "laughs", _laughs(
             "list", s["laughs"]))), "Gs kwargs: lists referencing the previous level twice"),
    Case("tf_network_cycle", "tf", "its own component", _tf(_tf_cycle),
         "Gs is its own synthesis component"),
    Case("tf_shared_network", "tf", "component is a D_stylegan2, expected "
         "'G_synthesis_stylegan2'", _tf(_tf_shared_d),
         "D (renamed G_synthesis) shared as Gs's synthesis network"),
    Case("tf_network_args", "tf", "constructor arguments", _tf(_tf_args_network),
         "a Network record created with arguments"),
    Case("tf_state_not_dict", "tf", "Network state is a list", _tf(_tf_state_list),
         "a Network whose pickled state is a list"),
    Case("tf_bad_version", "tf", "format version 1", _tf(_tf_set(2, "version", 1)),
         "a Network of format version 1"),
    Case("tf_top_level_dict", "tf", "top level is a dict",
         _tf(lambda t: {"G": t[0], "D": t[1], "Gs": t[2]}), "the networks in a dict"),
    Case("tf_conditional", "tf", "conditional TF StyleGAN2",
         _tf(_tf_kwarg(2, "label_size", 3)), "a conditional Gs (no PyTorch equivalent)"),
    Case("tf_unknown_kwarg", "tf", "unknown TensorFlow kwarg 'evil_kwarg'",
         _tf(_tf_kwarg(2, "evil_kwarg", 1)), "Gs with a kwarg legacy.py does not know"),
    Case("tf_bad_filter_kwarg", "tf", "resample_kernel=3: expected a list",
         _tf(_tf_kwarg(2, "resample_kernel", 3)), "Gs with a filter that is not a list"),
    Case("tf_bad_architecture_kwarg", "tf", "bad constructor arguments .*architecture",
         _tf(_tf_kwarg(2, "architecture", "evil")), "Gs with an unknown architecture"),
    Case("tf_v1_unknown_kwarg", "tf", r"G_style got unexpected arguments \['evil'\]",
         _tf(_tf_kwarg(2, "evil", 1), TF_V1_REFERENCE), "a StyleGAN v1 Gs with an unknown kwarg"),
    Case("tf_mixed_versions", "tf", "different StyleGAN versions", _tf(_tf_mixed_versions),
         "a StyleGAN2 G and Gs with a StyleGAN v1 D"),
    Case("tf_v1_missing_variable", "tf", r"buffers 'dlatent_avg' is missing",
         _tf(_tf_v1_missing, TF_V1_REFERENCE), "a StyleGAN v1 Gs without dlatent_avg"),
]


def write(case: Case, directory: str | pathlib.Path, scale: str = "test") -> pathlib.Path:
    """Builds `case` into `directory/<name>.pkl` (snapshots) or `.pt`; returns the path."""
    suffix = ".pt" if case.reader == "torchfile" else ".pkl"
    path = pathlib.Path(directory) / f"{case.name}{suffix}"
    path.write_bytes(case.build(SCALES[scale]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="test")
    parser.add_argument("--only", nargs="*", help="case names")
    args = parser.parse_args()
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if not args.only or case.name in args.only:
            path = write(case, args.out, args.scale)
            print(f"{path}  {path.stat().st_size:>10}  {case.about}")


if __name__ == "__main__":
    main()
