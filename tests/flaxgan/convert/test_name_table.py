"""flaxgan.convert.name_table: official state_dict <-> Flax variables, and npz files."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest

from flaxgan import convert
from flaxgan.convert import name_table
from tests.conftest import reference_files
from tests.flaxgan.convert.freeze_d import frozen_layers

# The PyTorch-era snapshots (StyleGAN v1 references are TensorFlow pickles: issue 19).
PKLS = [p.with_suffix(".pkl") for family in ("stylegan2", "stylegan3")
        for p in reference_files(family) if p.with_suffix(".pkl").is_file()]
DROPPED = ("resample_filter", "up_filter", "down_filter")  # Designed from constructor args.


@pytest.fixture(scope="module", params=PKLS, ids=lambda p: p.name)
def reference(request):
    return request.param, convert.load_snapshot(request.param)


def _node(tree, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _shape_tree(variables):
    """Like `jax.eval_shape(module.init, ...)`: leaves with only a `.shape`."""
    if isinstance(variables, dict):
        return {k: _shape_tree(v) for k, v in variables.items()}
    return types.SimpleNamespace(shape=np.shape(variables))


def _one_line(error: pytest.ExceptionInfo, source: str) -> str:
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{source}: "), message
    return message


# ---------------------------------------------------------------------- reference networks


@pytest.mark.parametrize("key", ["G", "D"])
def test_reference_round_trip_is_exact(reference, key):
    _, snap = reference
    record = snap[key]
    parameters, buffers = convert.from_flax(convert.to_flax(record.parameters, record.buffers))
    kept = {n: v for n, v in record.buffers.items() if not n.endswith(DROPPED)}
    for got, want in ((parameters, record.parameters), (buffers, kept)):
        assert list(got) == list(want)
        for name, value in want.items():
            assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
            assert got[name].tobytes() == value.tobytes(), name


def _check_layout(got, name: str, value: np.ndarray, parameter: bool = True) -> None:
    if name.endswith("weight") and value.ndim == 4:
        np.testing.assert_array_equal(got, value.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    elif name.endswith("weight") and value.ndim == 2:
        np.testing.assert_array_equal(got, value.T)  # [out, in] -> [in, out]
    elif parameter and name.endswith("const"):  # Not the buffers `noise_const` ([H, W]).
        np.testing.assert_array_equal(got, value.transpose(1, 2, 0))  # CHW -> HWC
    else:
        assert got is value or np.array_equal(got, value), name


def test_reference_layouts(reference):
    pkl, snap = reference
    for record in (snap["G"], snap["D"]):
        variables = convert.to_flax(record.parameters, record.buffers)
        for name, value in record.parameters.items():
            _check_layout(_node(variables["params"], name), name, value)
        for name, value in record.buffers.items():
            if name.endswith(DROPPED):
                with pytest.raises(KeyError):
                    _node(variables["buffers"], name)
            else:  # Frozen (Freeze-D) weights are buffers in the same layouts as parameters.
                _check_layout(_node(variables["buffers"], name), name, value, parameter=False)
    meta = json.loads(pkl.with_suffix(".json").read_text())
    if meta["G_kwargs"]["class_name"].endswith("networks_stylegan3.Generator"):
        g = convert.to_flax(snap["G"].parameters, snap["G"].buffers)
        weight = snap["G"].parameters["synthesis.input.weight"]
        np.testing.assert_array_equal(g["params"]["synthesis"]["input"]["weight"], weight.T)
        synthesis = g["buffers"]["synthesis"]
        assert {"transform", "freqs", "phases"} <= set(synthesis["input"])
        assert all(set(synthesis[name]) == {"magnitude_ema"} for name in meta["layer_names"])
        assert any(n.endswith("up_filter") for n in snap["G"].buffers)


def test_reference_discriminator_buffers_are_filters_and_frozen_layers(reference):
    pkl, snap = reference
    d = snap["D"]
    meta = json.loads(pkl.with_suffix(".json").read_text())
    frozen = frozen_layers(d, meta["D_kwargs"])
    kept = {n for n in d.buffers if not n.endswith(DROPPED)}
    assert {n.rsplit(".", 1)[0] for n in kept} == frozen
    assert {n.rsplit(".", 1)[1] for n in kept} <= {"weight", "bias"}
    # Without Freeze-D the converted D has no 'buffers' collection at all.
    want = {"params", "buffers"} if frozen else {"params"}
    assert set(convert.to_flax(d.parameters, d.buffers)) == want


def test_reference_check_against_itself(reference):
    _, snap = reference
    variables = convert.to_flax(snap["G"].parameters, snap["G"].buffers)
    convert.check_against(_shape_tree(variables), variables, source="x.pkl")


# ---------------------------------------------------------------------- rules and nesting


def test_rule_table_is_well_formed():
    for rule in convert.RULES:
        assert rule.why and rule.pattern.pattern.endswith("$")
        if rule.perm is not None:
            assert sorted(rule.perm) == list(range(rule.ndim))


@pytest.mark.parametrize("name, shape, flax_shape", [
    ("b4.conv.weight", (8, 3, 3, 1), (3, 1, 3, 8)),
    ("mapping.fc0.weight", (5, 7), (7, 5)),
    ("synthesis.input.weight", (6, 6), (6, 6)),
    ("synthesis.b4.const", (8, 4, 4), (4, 4, 8)),
    ("synthesis.b4.conv1.noise_const", (4, 4), (4, 4)),
    ("synthesis.input.transform", (3, 3), (3, 3)),
    ("weight", (2, 3), (3, 2)),
    ("overweight", (2, 3), (2, 3)),  # Whole name components only.
    ("b4.fc.bias", (5,), (5,)),
    ("synthesis.L0_36_64.magnitude_ema", (), ()),
])
def test_single_entries(name, shape, flax_shape):
    value = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    variables = convert.to_flax({name: value}, {})
    assert _node(variables["params"], name).shape == flax_shape
    parameters, buffers = convert.from_flax(variables)
    assert buffers == {} and parameters[name].tobytes() == value.tobytes()


@pytest.mark.parametrize("name", DROPPED)
def test_designed_filters_are_dropped_from_either_input(name):
    f = np.ones((4, 4), np.float32)
    variables = convert.to_flax({f"b8.conv0.{name}": f, "b8.conv0.bias": np.zeros(2)},
                                {f"b8.{name}": f[0]})
    assert list(variables) == ["params"]
    assert [list(d) for d in convert.from_flax(variables)] == [["b8.conv0.bias"], []]
    with pytest.raises(ValueError, match=name):
        convert.from_flax({"buffers": {"b8": {name: f}}})


@pytest.mark.parametrize("parameters, buffers, expected", [
    ({"a.b": np.zeros(1)}, {"a.b": np.zeros(1)}, "both a parameter and a buffer"),
    ({"a.b": np.zeros(1), "a.b.c": np.zeros(1)}, {}, "nests under the entry 'a.b'"),
    ({"a.b.c": np.zeros(1), "a.b": np.zeros(1)}, {}, "is both an entry and a module"),
    ({"a..b": np.zeros(1)}, {}, "malformed"),
])
def test_name_clashes(parameters, buffers, expected):
    with pytest.raises(ValueError, match=expected):
        convert.to_flax(parameters, buffers)


def test_from_flax_rejects_other_collections():
    with pytest.raises(ValueError, match="unexpected variable collection 'intermediates'"):
        convert.from_flax({"params": {}, "intermediates": {}})


# ---------------------------------------------------------------------- check_against


def _small():
    return convert.to_flax({"fc.weight": np.zeros((3, 2)), "fc.bias": np.zeros(3)},
                           {"w_avg": np.zeros(2)})


def test_check_against_accepts_a_match():
    convert.check_against(_shape_tree(_small()), _small(), source="net.pkl")


@pytest.mark.parametrize("edit, expected", [
    (lambda v: v["params"]["fc"].pop("bias"),
     "net.pkl: params 'fc.bias' is missing (expected shape (3,))"),
    (lambda v: v["buffers"].update(extra=np.zeros((1, 2))),
     "net.pkl: buffers 'extra' is unexpected (shape (1, 2))"),
    (lambda v: v["params"]["fc"].update(weight=np.zeros((3, 2))),
     "net.pkl: params 'fc.weight' has shape (3, 2), expected (2, 3)"),
    (lambda v: v.pop("buffers"), "net.pkl: buffers 'w_avg' is missing (expected shape (2,))"),
])
def test_check_against_names_file_key_and_shapes(edit, expected):
    variables = _small()
    edit(variables)
    with pytest.raises(convert.SnapshotError) as error:
        convert.check_against(_shape_tree(_small()), variables, source="net.pkl")
    assert _one_line(error, "net.pkl") == expected


def test_check_against_counts_further_problems():
    variables = {"params": {"fc": {"weight": np.zeros((9, 9))}}}
    with pytest.raises(convert.SnapshotError, match=r"\(and 2 more\)$") as error:
        convert.check_against(_shape_tree(_small()), variables, source="net.pkl")
    _one_line(error, "net.pkl")


# ---------------------------------------------------------------------- npz files


def _state():
    parameters = {"b4.conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
                  "b4.fc.bias": np.zeros(5, np.float16),
                  "synthesis.b4.conv1.noise_strength": np.float32(0.5) * np.ones((), np.float32)}
    buffers = {"mapping.w_avg": np.linspace(-1, 1, 7), "count": np.arange(3),
               "flags": np.array([True, False])}
    return parameters, buffers


def _assert_same(got, want):
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name


def test_npz_round_trip_is_exact(tmp_path):
    parameters, buffers = _state()
    path = tmp_path / "G.npz"
    convert.save_state_dict_npz(path, parameters, buffers)
    got_parameters, got_buffers = convert.load_state_dict_npz(path)
    _assert_same(got_parameters, parameters)
    _assert_same(got_buffers, buffers)
    assert os.listdir(tmp_path) == ["G.npz"]  # No temporary left behind.


@pytest.mark.skipif(not PKLS, reason="no reference .pkl files")
def test_npz_round_trip_of_a_reference_network(tmp_path):
    record = convert.load_snapshot(PKLS[0])["G_ema"]
    convert.save_state_dict_npz(tmp_path / "G_ema.npz", record.parameters, record.buffers)
    parameters, buffers = convert.load_state_dict_npz(tmp_path / "G_ema.npz")
    _assert_same(parameters, record.parameters)
    _assert_same(buffers, record.buffers)


def test_npz_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "G.npz"
    convert.save_state_dict_npz(path, *_state())
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        convert.save_state_dict_npz(path, {"x": np.zeros(1)}, {})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["G.npz"]


def test_npz_refuses_a_reserved_or_doubled_name(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        convert.save_state_dict_npz(tmp_path / "x.npz", {"__buffers__": np.zeros(1)}, {})
    with pytest.raises(ValueError, match="both"):
        convert.save_state_dict_npz(tmp_path / "x.npz", {"a": np.zeros(1)}, {"a": np.zeros(1)})


@pytest.mark.parametrize("case, expected", [
    ("missing", "cannot read"),
    ("random bytes", "not an npz file"),
    ("plain npz", "no '__buffers__' entry"),
    ("object array", "not a readable npz"),
    ("unlisted buffer", "buffer 'w_avg' is listed but not stored"),
    ("truncated", "not"),
])
def test_npz_errors_are_one_line(tmp_path, case, expected):
    path = tmp_path / "G.npz"
    if case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(100))
    elif case == "plain npz":
        np.savez(path, a=np.zeros(1))
    elif case == "object array":
        np.savez(path, a=np.array([{"x": 1}], dtype=object), __buffers__=np.array(["a"]))
    elif case == "unlisted buffer":
        np.savez(path, a=np.zeros(1), __buffers__=np.array(["w_avg"]))
    elif case == "truncated":
        convert.save_state_dict_npz(path, *_state())
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(convert.SnapshotError, match=expected) as error:
        convert.load_state_dict_npz(path)
    _one_line(error, str(path))


def test_npz_module_exports():
    assert set(name_table.__all__) <= set(dir(name_table))
    assert set(convert.__all__) <= set(dir(convert))
