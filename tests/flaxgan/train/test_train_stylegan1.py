"""StyleGAN v1 trained by the loop with progressive growing: lod schedule, resume, exports."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import smoke
from flaxgan import sample
from flaxgan.convert import tf_snapshot, tf_stylegan1
from flaxgan.train import loop, progressive, sharding
from flaxgan.train import state as state_lib
from tests.conftest import reference_files

TICK_KIMG = 0.128
FULL_KIMG = 0.64  # 4² stable to 0.25, 8² fades in to 0.5, 8² stable after
MID_FADE_KIMG = 0.384  # lod 1.464: resume in the middle of the fade-in


def _config(total_kimg: float):
    """`smoke.py:stylegan1` (16², lod 2 -> 0 over 1 kimg, minibatch 32 at 4², 16 above) with a
    tick (and a snapshot) every 0.128 kimg."""
    config = smoke.get_config("stylegan1")
    config.train.total_kimg = total_kimg
    config.schedule.tick_kimg_base = TICK_KIMG
    config.log.snapshot_every_ticks = 1
    config.log.grid_size = (4, 2)
    config.log.progress = False
    return config


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _schedule(config):
    return progressive.Schedule.from_config(config.schedule.to_dict())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("v1"))
    loop.train(_config(FULL_KIMG), workdir)
    return workdir


def _assert_lod_follows_the_schedule(records, config, devices: int = 8):
    for r in records:
        # The tick's last minibatch started at kimg - minibatch; its stage is the record's.
        start = round(r["kimg"] * 1000) - r["Progress/minibatch"]
        want = progressive.training_stage(start, 16, devices, _schedule(config))
        assert r["Progress/lod"] == pytest.approx(want.lod), r["kimg"]
        assert r["Progress/minibatch"] == want.minibatch
        assert np.isfinite(r["Loss/G/loss"]) and np.isfinite(r["Loss/D/loss"])
        assert np.isfinite(r["Loss/r1_penalty"]) and "Loss/pl_penalty" not in r


def test_trains_through_a_lod_transition(full_run):
    config = _config(FULL_KIMG)
    # The official optimizer: TF 1's Adam (ε on the raw √v; `test_step` checks the formula).
    assert loop.hyperparameters(config.train, config.augment).adam == "tf1"
    records = _records(full_run)
    _assert_lod_follows_the_schedule(records, _config(FULL_KIMG))
    lods = [r["Progress/lod"] for r in records]
    assert lods[0] == 2.0 and lods[-1] == 1.0 and any(1 < lod < 2 for lod in lods)
    assert [r["Progress/minibatch"] for r in records][:2] == [32, 32]
    assert records[-1]["Progress/minibatch"] == 16
    assert records[-1]["kimg"] == pytest.approx(FULL_KIMG)
    # G_ema carries the lod of the last step (the official Gs copies G's non-trainables) and
    # loads as a sampler.
    snapshot = os.path.join(full_run, "snapshots", "network-snapshot-000000.640")
    g = sample.load(snapshot)
    assert float(np.asarray(g.buffers["lod"])) == 1.0
    assert sample.generate(g, [0, 1])[0].size == (16, 16)


def test_lod_changes_do_not_recompile_each_minibatch_compiles_once(full_run):
    """lod moved through 2 -> 1.0 in many steps: one compilation per phase and minibatch."""
    config = _config(FULL_KIMG)
    _, _, G, D = loop.build_networks(config.model, 16, 3, 0)
    hp = loop.hyperparameters(config.train, config.augment)
    for minibatch in (32, 16):
        steps = loop._train_steps(G, D, dataclasses.replace(hp, batch_size=minibatch),
                                  sharding.make_mesh(), None)  # the run's, from the cache
        assert [p.name for p in steps.phases] == ["Dboth", "Gmain"]
        assert all(fn._cache_size() == 1 for fn in steps.run_phase.values()), minibatch


def _snapshot_arrays(workdir, name):
    out = {}
    for key in ("G", "D", "G_ema"):
        with np.load(os.path.join(workdir, "snapshots", name, f"{key}.npz")) as f:
            out.update({f"{key}/{k}": f[k] for k in f.files})
    return out


def test_resume_mid_transition_continues_the_schedule_bit_for_bit(full_run, tmp_path):
    """Stopped at 0.384 kimg (mid fade-in), resumed to 0.64: the same lod, learning rates,
    optimizer moments and data as the uninterrupted run, so the same networks bit for bit
    (same machine, same compiled steps)."""
    workdir = str(tmp_path / "halves")
    loop.train(_config(MID_FADE_KIMG), workdir)
    first = _records(workdir)
    assert 1 < first[-1]["Progress/lod"] < 2
    loop.train(_config(FULL_KIMG), workdir)
    records = _records(workdir)
    _assert_lod_follows_the_schedule(records[len(first):], _config(FULL_KIMG))
    name = "network-snapshot-000000.640"
    want, got = _snapshot_arrays(full_run, name), _snapshot_arrays(workdir, name)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert records[-1]["Loss/G/loss"] == _records(full_run)[-1]["Loss/G/loss"]


def test_resume_pkl_takes_an_official_tf_stylegan_snapshot():
    """The official `--resume` of a TF StyleGAN (v1) snapshot: G, D and Gs as they are."""

    pkl = next(p.with_suffix(".pkl") for p in reference_files("stylegan1")
               if p.stem == "sg1_32")
    meta = json.loads(pkl.with_suffix(".json").read_text())
    model = {"G_class": meta["G_kwargs"]["class_name"], "D_class": meta["D_kwargs"]["class_name"],
             **{f"{n}_kwargs": {k: v for k, v in meta[f"{n}_kwargs"].items() if k not in (
                 "class_name", "num_channels", "resolution", "label_size")} for n in "GD"}}
    _, _, G, D = loop.build_networks(model, 32, 3, 0)
    # The import checks names and shapes only: the target's shapes, without compiling the init.
    g_vars, d_vars = jax.eval_shape(
        lambda key: state_lib.init_variables(G, D, key, 32, 3, 0), jax.random.key(0))
    g, d, ema = loop._import_snapshot(str(pkl), g_vars, d_vars)
    records = tf_snapshot.load_tf_snapshot(pkl)
    for variables, key in ((g, "G"), (d, "D"), (ema, "G_ema")):
        want = tf_stylegan1.to_flax(records[key].all_variables())
        for (path, got), (_, value) in zip(jax.tree_util.tree_leaves_with_path(variables),
                                           jax.tree_util.tree_leaves_with_path(want),
                                           strict=True):
            np.testing.assert_array_equal(np.asarray(got), value, err_msg=f"{key}{path}")
