"""StyleGAN (v1) back to the official TF snapshot format (`tools/export_tf_stylegan1.py`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import sample
from flaxgan.convert import export, tf_snapshot, tf_stylegan1
from flaxgan.models import stylegan1 as s1
from tests.conftest import reference_files
from tools import export_tf_stylegan1 as tool

SRC = "# training/networks_stylegan.py would be here\n"
OFFICIAL = [p.with_suffix(".pkl") for p in reference_files("stylegan1")
            if p.with_suffix(".pkl").exists()]


def _flatten(record: tf_snapshot.TFNetworkRecord) -> dict:
    """Everything a record holds, comparable: names, build functions, kwargs, variables."""
    out = {"": (record.name, record.build_func_name, record.static_kwargs, record.version)}
    for key, comp in record.components.items():
        out[key] = (comp.name, comp.build_func_name, comp.static_kwargs, comp.version)
    return out


@pytest.mark.parametrize("pkl", OFFICIAL, ids=lambda p: p.stem)
def test_official_snapshot_written_again_is_the_same_snapshot(pkl, tmp_path):
    records = tf_snapshot.load_tf_snapshot(pkl)
    networks = {key: ({"class_name": r.class_name, **r.static_kwargs},
                      tf_stylegan1.to_flax(r.all_variables())) for key, r in records.items()}
    out = tool.write_snapshot(tmp_path / "again.pkl", networks, SRC)
    again = tf_snapshot.load_tf_snapshot(out)
    assert again.keys() == records.keys()
    for key, record in records.items():
        assert _flatten(again[key]) == _flatten(record), key
        want, got = record.all_variables(), again[key].all_variables()
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{key}/{name}")


def test_a_flaxgan_v1_export_loads_back_from_the_official_format(tmp_path):
    kwargs = dict(resolution=16, num_channels=3, label_size=0, latent_size=16,
                  dlatent_size=16, mapping_layers=2, mapping_fmaps=16, fmap_base=64,
                  fmap_max=16)
    G, D = s1.G_style(**kwargs), s1.D_basic(resolution=16, num_channels=3, fmap_base=64,
                                            fmap_max=16)
    g_vars = jax.jit(lambda: G.init({"params": jax.random.key(0)}, jnp.zeros([1, 16]),
                                    noise_mode="const"))()
    d_vars = jax.jit(lambda: D.init({"params": jax.random.key(1)}, jnp.zeros([1, 16, 16, 3])))()
    folder = tmp_path / "export"
    for key, class_name, kw, variables in (
            ("G", "G_style", kwargs, g_vars), ("G_ema", "G_style", kwargs, g_vars),
            ("D", "D_basic", dict(resolution=16, num_channels=3, fmap_base=64, fmap_max=16),
             d_vars)):
        export.write_network(folder, key, {"class_name": f"{tool.MODULE}.{class_name}", **kw},
                             variables)
    src = tmp_path / "stylegan" / "training"
    src.mkdir(parents=True)
    (src / "networks_stylegan.py").write_text(SRC)
    pkl = tool.export_snapshot(str(folder), str(tmp_path / "snapshot.pkl"),
                               str(tmp_path / "stylegan"))
    records = tf_snapshot.load_tf_snapshot(pkl)
    assert (records["G_ema"].name, records["D"].name) == ("Gs", "D")
    assert records["G_ema"].components["mapping"].static_kwargs["dlatent_broadcast"] == 6
    ws = sample.mapping(sample.load(folder), sample.seeds_to_z(sample.load(folder), [0, 1]))
    np.testing.assert_array_equal(sample.synthesize(sample.load(pkl), ws),
                                  sample.synthesize(sample.load(folder), ws))
