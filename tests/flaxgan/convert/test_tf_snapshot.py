"""`flaxgan.convert.tf_snapshot` and `sample.load` of official TF snapshots: file forms, keys,
the records, kwargs conversion and the sample API on StyleGAN (v1) generators. Parity with the
official code: `test_tf_snapshot_parity.py`; hostile files: the corpus (`tf_*` cases)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flaxgan import convert, errors, sample
from flaxgan.convert import tf_snapshot
from tests.conftest import TEST_DATA
from tests.flaxgan.convert import tf_pickle

SG2 = TEST_DATA / "reference_tf_stylegan2" / "tf_sg2_e_orig_gray16.pkl"
V1 = TEST_DATA / "reference_stylegan1" / "sg1_16_cond_fused_fixed.pkl"
TORCH = TEST_DATA / "reference" / "sg2_uncond32.pkl"


def _single(tmp_path, index: int, name: str = "net.pkl"):
    path = tmp_path / name
    path.write_bytes(tf_pickle.dumps(tf_pickle.read(SG2)[index]))
    return path


def test_detects_tf_snapshots():
    assert tf_snapshot.is_tf_snapshot(SG2) and tf_snapshot.is_tf_snapshot(V1)
    assert not tf_snapshot.is_tf_snapshot(TORCH)


def test_records_are_plain_read_only_data_without_the_build_source():
    records = tf_snapshot.load_tf_snapshot(SG2)
    assert sorted(records) == ["D", "G", "G_ema"]
    gs = records["G_ema"]
    assert (gs.name, gs.class_name, gs.family, gs.version) == (
        "Gs", "training.networks_stylegan2.G_main", "stylegan2", 4)
    assert sorted(gs.components) == ["mapping", "synthesis"]
    assert gs.components["synthesis"].build_func_name == "G_synthesis_stylegan2"
    assert "build_module_src" not in {f.name for f in dataclasses.fields(gs)}
    values = gs.all_variables()
    assert "G_synthesis/4x4/Const/const" in values and "dlatent_avg" in values
    assert not any(v.flags.writeable for v in values.values())


def test_single_networks(tmp_path):
    gs = _single(tmp_path, 2, "gs.pkl")
    assert sorted(tf_snapshot.load_tf_snapshot(gs)) == ["G_ema"]
    assert sample.load(gs).img_resolution == 16
    with pytest.raises(convert.SnapshotError, match=r"has no network 'G' \(has \['G_ema'\]; "
                                                    "a single Network is 'G_ema'"):
        sample.load(gs, key="G")
    d = _single(tmp_path, 1, "d.pkl")
    assert sorted(tf_snapshot.load_tf_snapshot(d)) == ["D"]


def test_keys_and_one_line_errors(tmp_path):
    with pytest.raises(convert.SnapshotError, match="'D' is a discriminator") as e:
        sample.load(SG2, key="D")
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{SG2}: ")
    bad = tmp_path / "swapped.pkl"
    g, d, gs = tf_pickle.read(SG2)
    bad.write_bytes(tf_pickle.dumps((d, g, gs)))
    with pytest.raises(convert.SnapshotError, match="G is a D_stylegan2, not a generator"):
        sample.load(bad)
    assert issubclass(convert.SnapshotError, errors.UserError)


def _record(**kwargs) -> tf_snapshot.TFNetworkRecord:
    g = tf_snapshot.load_tf_snapshot(SG2)["G_ema"]
    return dataclasses.replace(g, static_kwargs={**g.static_kwargs, **kwargs})


def test_stylegan2_kwargs_follow_tf_semantics():
    kwargs = tf_snapshot.stylegan2_kwargs(_record(dlatent_avg_beta=0.99, fused_modconv=False))
    assert kwargs["mapping_kwargs"]["w_avg_beta"] == 0.99  # TF StyleGAN2's name for it.
    assert kwargs["synthesis_kwargs"]["channel_base"] == 256  # 2 * fmap_base.
    with pytest.raises(convert.SnapshotError, match=r"f\.pkl: Gs: fmap_decay=0\.5 has no "):
        tf_snapshot.stylegan2_kwargs(_record(fmap_decay=0.5), source="f.pkl")
    d = tf_snapshot.load_tf_snapshot(SG2)["D"]
    off = dataclasses.replace(d, static_kwargs={**d.static_kwargs, "mbstd_group_size": 0})
    assert tf_snapshot.stylegan2_kwargs(off)["epilogue_kwargs"]["mbstd_num_channels"] == 0
    default = tf_snapshot.stylegan2_kwargs(d)["epilogue_kwargs"]
    assert (default["mbstd_group_size"], default["mbstd_num_channels"]) == (4, 2)


def test_stylegan1_generator_in_the_sample_api(tmp_path):
    g = sample.load(V1)
    assert g.is_stylegan1 and g.has_noise and g.c_dim == 3 and g.num_ws == 6
    assert sample.layer_indices(g, "coarse") == (0, 1, 2, 3)  # 4² and 8²: two layers each.
    assert sample.layer_indices(g, "middle") == (4, 5)
    images = sample.generate(g, [1, 2], truncation_psi=0.7, c=0)
    assert [im.size for im in images] == [(16, 16)] * 2
    with pytest.raises(errors.InvalidArgument, match="StyleGAN2 generators only"):
        sample.synthesize(g, np.zeros([1, 6, g.w_dim], np.float32), fused_modconv=True)
    ws = sample.mapping(g, sample.seeds_to_z(g, [3]), c=1)
    exported = sample.load(sample.export(g, tmp_path / "v1"))  # Official TF names and layouts.
    np.testing.assert_array_equal(sample.synthesize(exported, ws), sample.synthesize(g, ws))
