"""flaxgan.convert.snapshot: official snapshots read exactly, hostile or broken ones refused."""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import pickletools
import re
import subprocess

import numpy as np
import pytest

from flaxgan import convert
from flaxgan.convert import snapshot as snapshot_lib
from tests.conftest import reference_files
from tests.flaxgan.convert import official_pickle as op
from tests.flaxgan.convert.freeze_d import frozen_layers

# The PyTorch-era snapshots (StyleGAN v1 references are TensorFlow pickles: issue 19).
PKLS = [p.with_suffix(".pkl") for family in ("stylegan2", "stylegan3")
        for p in reference_files(family) if p.with_suffix(".pkl").is_file()]
NETWORK_STATE = {"G": "G", "D": "D", "G_ema": "G"}  # Reference G_ema holds G's values.
# Every buffer name the official StyleGAN2 / StyleGAN3 networks register.
OFFICIAL_BUFFERS = {"w_avg", "noise_const", "resample_filter", "magnitude_ema", "up_filter",
                    "down_filter", "transform", "freqs", "phases"}


def _meta(pkl):
    return json.loads(pkl.with_suffix(".json").read_text())


def _state(pkl, net: str) -> dict[str, np.ndarray]:
    """The reference state_dict of `net` ('G' / 'D') from the `.npz` beside `pkl`."""
    npz = pkl.with_suffix(".npz")
    if not npz.exists():
        pytest.skip(f"no {npz.name} beside {pkl.name}")
    prefix = f"state/{net}."
    with np.load(npz) as f:
        state = {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}
        # The reference `state/G.mapping.w_avg` was recorded after the training-mode loss
        # phases had moved it; the snapshot holds the value the recorded outputs were made
        # with, which the file also keeps as `io/w_avg_before`.
        if net == "G" and "io/w_avg_before" in f.files:
            state["mapping.w_avg"] = f["io/w_avg_before"]
    return state


def _assert_one_line_naming(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{os.fspath(path)}: "), message
    return message


def _write(tmp_path, data: bytes, name: str = "snapshot.pkl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------- reference snapshots


@pytest.fixture(scope="module", params=PKLS, ids=lambda p: p.name)
def reference(request):
    return request.param, convert.load_snapshot(request.param)


@pytest.mark.parametrize("key", list(NETWORK_STATE))
def test_reference_tensors_are_the_official_state_dict(reference, key):
    pkl, snap = reference
    record = snap[key]
    got = {**record.parameters, **record.buffers}
    want = _state(pkl, NETWORK_STATE[key])
    assert not set(record.parameters) & set(record.buffers)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), f"{key}.{name} differs"


def test_reference_constructor_arguments_match_json(reference):
    pkl, snap = reference
    meta = _meta(pkl)
    for key, kwargs in (("G", meta["G_kwargs"]), ("G_ema", meta["G_kwargs"]),
                        ("D", meta["D_kwargs"])):
        record = snap[key]
        assert record.class_name == kwargs["class_name"], key
        assert record.init_args == ()
        assert record.init_kwargs == {k: v for k, v in kwargs.items() if k != "class_name"}
    assert snap["augment_pipe"] is None and snap["training_set_kwargs"] is None


def test_reference_buffers_are_exactly_the_official_buffers(reference):
    pkl, snap = reference
    for key in NETWORK_STATE:
        record = snap[key]
        # Freeze-D layers keep their weight and bias as buffers.
        frozen = frozen_layers(record, _meta(pkl)["D_kwargs"]) if key == "D" else set()
        buffers = [n for n in record.buffers if n.rsplit(".", 1)[0] not in frozen]
        assert {n.rsplit(".", 1)[-1] for n in buffers} <= OFFICIAL_BUFFERS, key
        assert not {n.rsplit(".", 1)[-1] for n in record.parameters} & OFFICIAL_BUFFERS, key


def test_reference_w_avg_is_the_truncation_centre_of_the_recorded_ws(reference):
    pkl, snap = reference
    npz = pkl.with_suffix(".npz")
    if not npz.exists():
        pytest.skip(f"no {npz.name}")
    with np.load(npz) as f:
        ws1, ws07 = f["io/ws_psi1.0"], f["io/ws_psi0.7"]
    w_avg = snap["G_ema"].buffers["mapping.w_avg"]
    np.testing.assert_allclose(w_avg + 0.7 * (ws1 - w_avg), ws07, atol=1e-5)


def test_reference_records_are_frozen_and_read_only(reference):
    _, snap = reference
    record = snap["G"]
    with pytest.raises(AttributeError):
        record.class_name = "x"
    weight = next(iter(record.parameters.values()))
    with pytest.raises(ValueError):
        weight[...] = 0
    assert "parameters" in repr(record) and len(repr(record)) < 2000


@pytest.mark.skipif(not PKLS, reason="no reference .pkl files")
def test_helper_writes_torch_legacy_storages_byte_for_byte():
    """The synthetic snapshots below use the real storage format (checked on a real blob)."""
    data = PKLS[0].read_bytes()
    blob = next(arg for op_, arg, _ in pickletools.genops(data) if op_.name == "BINBYTES")
    stream = io.BytesIO(blob)
    for _ in range(3):  # magic, protocol version, sys_info
        list(pickletools.genops(stream))
    pid = [arg for op_, arg, _ in pickletools.genops(stream) if "UNICODE" in op_.name]
    values = snapshot_lib._storage_from_bytes(blob)
    assert op.storage_bytes(values, key=pid[1]) == blob


# ---------------------------------------------------------------------- hostile pickles


class _Payload:
    """Runs `fn(*args)` when unpickled by an unrestricted unpickler."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    return {
        "os.system": (_Payload(os.system, f"touch {marker}"), "posix.system"),
        "builtins.eval": (_Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
                          "builtins.eval"),
        "subprocess.Popen": (_Payload(subprocess.Popen, ["touch", str(marker)]),
                             "subprocess.Popen"),
    }


@pytest.mark.parametrize("where", ["top level", "inside init_kwargs", "inside a network"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_hostile_globals_are_refused_and_never_run(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    payload, global_name = _payloads(marker)[kind]
    if where == "top level":
        obj = payload
    elif where == "inside init_kwargs":
        obj = op.snapshot(D=op.Module("Discriminator", init_kwargs={"x": payload}))
    else:
        obj = op.snapshot(G=op.Module("Generator", modules={"evil": payload}))
    path = _write(tmp_path, op.dumps(obj))
    with pytest.raises(convert.SnapshotError) as error:
        convert.load_snapshot(path)
    message = _assert_one_line_naming(error, path)
    assert f"refuses global '{global_name}'" in message
    assert not marker.exists()


def test_hostile_global_inside_a_tensor_storage_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    for header in (op.LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(header, inner, protocol=2)
    pickle.dump(_Payload(os.system, f"touch {marker}"), inner, protocol=2)

    class Evil:
        def __reduce__(self):
            return op._STAND_INS["torch.storage"]["_load_from_bytes"], (inner.getvalue(),)

    path = _write(tmp_path, op.dumps(op.snapshot(G=op.Module(
        "Generator", buffers={"x": op.Tensor(Evil(), 0, (1,), (1,))}))))
    with pytest.raises(convert.SnapshotError, match="refuses global 'posix.system'") as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()\nclass Generator: pass\n"
    snap = op.snapshot(G=op.Module("Generator", modules={"fc": op.dense(2, 2)},
                                   module_src=source))
    loaded = convert.load_snapshot(_write(tmp_path, op.dumps(snap)))
    assert loaded["G"].parameters["fc.weight"].shape == (2, 2)
    assert not marker.exists()


# ---------------------------------------------------------------------- broken files


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "random bytes",
                                  "text", "trailing data"])
def test_unreadable_files_raise_one_line_errors(tmp_path, case):
    path = tmp_path / "broken.pkl"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "text":
        path.write_text("not a pickle at all")
    elif case == "trailing data":
        path.write_bytes(op.dumps(op.snapshot()) + b"junk")
    with pytest.raises(convert.SnapshotError) as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


@pytest.mark.skipif(not PKLS, reason="no reference .pkl files")
@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_reference_snapshot(tmp_path, fraction):
    data = PKLS[0].read_bytes()
    path = _write(tmp_path, data[: int(len(data) * fraction)])
    with pytest.raises(convert.SnapshotError) as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


@pytest.mark.parametrize("obj, expected", [
    ([1, 2, 3], "top level is a list"),
    ({"D": None}, "has no network 'G'"),
    (dict(op.snapshot(), D="not a network"), "'D' is a str, not a network"),
    ({k: v for k, v in op.snapshot().items() if k != "G_ema"}, "has no network 'G_ema'"),
])
def test_wrong_structure(tmp_path, obj, expected):
    path = _write(tmp_path, op.dumps(obj))
    with pytest.raises(convert.SnapshotError, match=expected) as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


def _corrupt(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and old in data
    return data.replace(old, new, 1)


@pytest.mark.skipif(not PKLS, reason="no reference .pkl files")
@pytest.mark.parametrize("corruption", ["magic", "element count", "storage type"])
def test_corrupt_legacy_storage_in_reference(tmp_path, corruption):
    data = PKLS[0].read_bytes()
    if corruption == "magic":
        magic = pickle.dumps(op.LEGACY_MAGIC, protocol=2)
        data, expected = _corrupt(data, magic, magic[:-3] + b"\x00\x00."), "not a torch.save"
    elif corruption == "element count":  # The int64 after the first storage's key list.
        keys_end = re.search(rb"q\x01a\.(.{8})", data, re.DOTALL)
        count = int.from_bytes(keys_end[1], "little")
        data = _corrupt(data, keys_end[0], keys_end[0][:4] + (count + 1).to_bytes(8, "little"))
        expected = f"holds {count + 1} elements, declared {count}"
    else:
        data = _corrupt(data, b"torch\nFloatStorage", b"torch\nEvil_Storage")
        expected = "tensor storage refuses global 'torch.Evil_Storage'"
    path = _write(tmp_path, data)
    with pytest.raises(convert.SnapshotError, match=re.escape(expected)) as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


def test_corrupt_zip_storage(tmp_path):
    values = np.arange(6, dtype=np.float32)
    data = op.dumps(op.snapshot(G=op.Module(
        "Generator", buffers={"x": op.tensor(values, fmt="zip")})))
    path = _write(tmp_path, _corrupt(data, values.tobytes(), values[::-1].tobytes()))
    with pytest.raises(convert.SnapshotError, match="bad tensor storage") as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


@pytest.mark.parametrize("offset, size, stride", [
    (0, (4, 2), (2, 1)), (5, (1,), (1,)), (0, (2, 2), (1, 4)), (-1, (1,), (1,)),
])
def test_tensor_outside_its_storage(tmp_path, offset, size, stride):
    bad = op.Tensor(op.Storage(np.zeros(5, np.float32)), offset, size, stride)
    path = _write(tmp_path, op.dumps(op.snapshot(G=op.Module("Generator", buffers={"x": bad}))))
    with pytest.raises(convert.SnapshotError, match="tensor") as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


# ---------------------------------------------------------------------- decoding details


def _load(tmp_path, obj, protocol=4):
    return convert.load_snapshot(_write(tmp_path, op.dumps(obj, protocol=protocol)))


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64, np.uint8,
                                   np.bool_])
def test_storage_formats_and_dtypes(tmp_path, fmt, dtype):
    values = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    snap = _load(tmp_path, op.snapshot(G=op.Module(
        "Generator", buffers={"x": op.tensor(values, fmt=fmt)})))
    got = snap["G"].buffers["x"]
    assert got.dtype == values.dtype and got.tobytes() == values.tobytes()


def test_strided_views_of_a_shared_storage(tmp_path):
    """Tensors are `as_strided(storage, size, stride, offset)`: transposes, slices, sharing."""
    storage = op.Storage(np.arange(20, dtype=np.float32))
    buffers = {
        "transposed": op.Tensor(storage, 0, (4, 3), (1, 4)),  # (arange(12).reshape(3, 4)).T
        "sliced": op.Tensor(storage, 7, (2, 2), (5, 1)),
        "broadcast": op.Tensor(storage, 3, (2, 3), (0, 1)),
        "scalar": op.Tensor(storage, 19, (), ()),
        "empty": op.Tensor(storage, 0, (0, 3), (3, 1)),
    }
    got = _load(tmp_path, op.snapshot(G=op.Module("Generator", buffers=buffers)))["G"].buffers
    flat = np.arange(20, dtype=np.float32)
    np.testing.assert_array_equal(got["transposed"], flat[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(got["sliced"], [[7, 8], [12, 13]])
    np.testing.assert_array_equal(got["broadcast"], [[3, 4, 5], [3, 4, 5]])
    assert got["scalar"].shape == () and got["scalar"] == 19
    assert got["empty"].shape == (0, 3)
    assert all(a.flags.c_contiguous and a.base is None for a in got.values())


def test_module_tree_flattening(tmp_path):
    """Dotted names relative to each network; None and non-persistent entries skipped."""
    leaf = op.Module("SynthesisLayer", parameters={"weight": np.ones((2, 2, 1, 1), np.float32),
                                                   "bias": None},
                     buffers={"noise_const": np.zeros((4, 4), np.float32),
                              "scratch": np.zeros(1, np.float32)},
                     non_persistent={"scratch"})
    block = op.Module("SynthesisBlock", modules={"conv0": leaf, "torgb": None},
                      buffers={"resample_filter": np.ones((4, 4), np.float32)})
    g = op.Module("Generator", modules={"synthesis": op.Module(
        "SynthesisNetwork", modules={"b4": block})}, parameters={"own": np.ones(1, np.float32)})
    record = _load(tmp_path, op.snapshot(G=g))["G"]
    assert list(record.parameters) == ["own", "synthesis.b4.conv0.weight"]
    assert list(record.buffers) == ["synthesis.b4.resample_filter",
                                    "synthesis.b4.conv0.noise_const"]


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_plain_data_and_pickle_protocols(tmp_path, protocol):
    """EasyDict -> dict, numpy scalars -> Python scalars, arrays kept; Python 3.7's protocol 3
    (sets as `builtins.set`) too."""
    kwargs = op.EasyDict(mapping_kwargs=op.EasyDict(num_layers=np.int64(2)),
                         cutoff=np.float64(2.5), flag=np.bool_(True), size=np.array([36, 36]))
    training_set = op.EasyDict(class_name="training.dataset.ImageFolderDataset", path="/x",
                               xflip=False, resolution=256)
    snap = _load(tmp_path, op.snapshot(
        G=op.Module("Generator", init_args=(np.float32(0.5),), init_kwargs=kwargs),
        training_set_kwargs=training_set, extra={"steps": 3}), protocol=protocol)
    record = snap["G"]
    assert type(record.init_kwargs) is dict and type(record.init_kwargs["mapping_kwargs"]) is dict
    assert record.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    assert type(record.init_kwargs["mapping_kwargs"]["num_layers"]) is int
    assert type(record.init_kwargs["cutoff"]) is float and record.init_kwargs["flag"] is True
    np.testing.assert_array_equal(record.init_kwargs["size"], [36, 36])
    assert record.init_args == (0.5,) and type(record.init_args[0]) is float
    assert snap["training_set_kwargs"] == dict(training_set)
    assert type(snap["training_set_kwargs"]) is dict and snap["extra"] == {"steps": 3}


def test_absent_optional_entries_are_filled(tmp_path):
    snap = _load(tmp_path, {k: v for k, v in op.snapshot().items()
                            if k not in ("augment_pipe", "training_set_kwargs")})
    assert snap["augment_pipe"] is None and snap["training_set_kwargs"] is None


@pytest.mark.parametrize("network, expected", [
    (op.Module("Generator", modules={"fc": op.dense(2, 2)}), "training.networks.Generator"),
    (op.Module("Discriminator", modules={"b4": op.Module("DiscriminatorEpilogue", modules={
        "out": op.dense(2, 1, stylegan3_repo=True)})}),
     "training.networks_stylegan2.Discriminator"),
    (op.Module("Generator", modules={
        "mapping": op.Module("MappingNetwork", modules={"fc0": op.dense(2, 2, True)}),
        "synthesis": op.Module("SynthesisNetwork", modules={
            "input": op.Module("SynthesisInput", modules={"affine": op.dense(2, 4, True)})})}),
     "training.networks_stylegan3.Generator"),
    (op.Module("AugmentPipe", buffers={"p": np.zeros((), np.float32)}),
     "training.augment.AugmentPipe"),
    (op.Module("Custom"), "Custom"),
])
def test_official_module_is_identified_from_module_state(tmp_path, network, expected):
    """A pickle names no module; the official ones differ in state (see `_official_module`)."""
    assert _load(tmp_path, op.snapshot(G=network))["G"].class_name == expected


@pytest.mark.parametrize("module, expected", [
    (op.Module("Generator", init_kwargs=None), "has no constructor arguments"),
    (op.Module("Generator", modules={"x": 3}), "Generator.x is a int, not a module"),
    (op.Module("Generator", parameters={"w": "text"}), "Generator.w: parameter is a str"),
])
def test_malformed_modules(tmp_path, module, expected):
    path = _write(tmp_path, op.dumps(op.snapshot(G=module)))
    with pytest.raises(convert.SnapshotError, match=expected) as error:
        convert.load_snapshot(path)
    _assert_one_line_naming(error, path)


def test_refusal_message_is_bounded(tmp_path):
    module, name = b"m" * 100_000, b"n" * 10
    data = (b"\x80\x04X" + len(module).to_bytes(4, "little") + module
            + b"X" + len(name).to_bytes(4, "little") + name + b"\x93.")  # STACK_GLOBAL, STOP
    path = _write(tmp_path, data)
    with pytest.raises(convert.SnapshotError, match="refuses global 'mmm") as error:
        convert.load_snapshot(path)
    assert len(_assert_one_line_naming(error, path)) < 1000
