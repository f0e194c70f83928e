"""Conditional training: attribute classes from a folder + table, the fakes' labels, and the
partial resume of an unconditional snapshot into a conditional model (issue 18 item 5)."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os

import jax
import numpy as np
import pytest
from PIL import Image

from data_pipelines import input as data_input
from data_pipelines.builders.celeba_faces.celeba_faces import read_table
from experiments.configs import common
from flaxgan import sample
from flaxgan.metrics import evaluation
from flaxgan.train import loop, partial_resume, sharding
from flaxgan.train import state as state_lib
from flaxgan.train import step as step_lib
from tests.conftest import TEST_DATA

FACES = TEST_DATA / "celeba_small"
PAIR = ("Male", "Young")
RES, BATCH = 8, 16  # 8²: the smallest StyleGAN2 (b4, b8), the cheapest to compile


def _table_classes(files) -> np.ndarray:
    """Male x Young classes of `files` straight from the table (2 * Male + Young)."""
    names, rows = read_table(FACES / "list_attr_celeba.txt", header_lines=2)
    male, young = names.index("Male"), names.index("Young")
    return np.array([2 * (rows[f.name][male] == "1") + (rows[f.name][young] == "1")
                     for f in files])


def test_attribute_labels_make_classes_of_a_folder_and_its_table():
    assert data_input.attribute_classes(PAIR) == (
        "not_Male,not_Young", "not_Male,Young", "Male,not_Young", "Male,Young")
    meta = data_input.dataset_metadata(FACES, "train[:64]", resolution=RES,
                                       attribute_labels=PAIR)
    assert (meta.c_dim, meta.num_examples) == (4, 64)
    source, _ = data_input.open_source(FACES, "train[:64]", resolution=RES,
                                       attribute_labels=PAIR)
    want = _table_classes(source.files)
    assert len(set(want)) == 4  # the test data hold every class
    np.testing.assert_array_equal(source.labels, want)
    np.testing.assert_array_equal(
        data_input.source_labels(FACES, "train[:64]", attribute_labels=PAIR), want)
    it = data_input.make_dataset(FACES, "train[:64]", 64, resolution=RES, shuffle=False,
                                 one_hot=True, attribute_labels=PAIR, process_index=0,
                                 process_count=1)
    np.testing.assert_array_equal(next(it)["label"], np.eye(4, dtype=np.float32)[want])


@pytest.mark.parametrize("kwargs, message", [
    (dict(attribute_labels=("Male", "Smiley")), r"unknown: \['Smiley'\]"),
    (dict(attribute_labels=PAIR, folder_labels=True), "pick one"),
    (dict(attribute_labels=PAIR, attr_file="/nonexistent/list_attr_celeba.txt"),
     "attribute table not found"),
])
def test_attribute_labels_bad_input_is_one_line(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        data_input.dataset_metadata(FACES, "train[:8]", resolution=RES, **kwargs)
    assert "\n" not in str(error.value)


def _spy(G, seen: list):
    """`G` whose mapping reports `(device, labels)` from inside the training step's
    shard_map (outside it, at initialisation, it is G)."""
    class Spy(type(G)):
        def map(self, z, c=None, *args, **kwargs):
            try:
                device = jax.lax.axis_index(sharding.BATCH_AXIS)
            except NameError:  # not inside the step's shard_map
                device = None
            if device is not None:
                jax.debug.callback(lambda d, c: seen.append((int(d), np.asarray(c))),
                                   device, c)
            return super().map(z, c, *args, **kwargs)

    return Spy(**{f.name: getattr(G, f.name) for f in dataclasses.fields(G)
                  if f.name not in ("parent", "name")})


def test_fakes_take_the_labels_of_the_real_stream():
    """With the stream's class frequencies (what the loop passes), every generated image's
    class is drawn from them, independently of the batch (the official labels each fake with
    `training_set.get_label(random index)`); without them, the device's real labels,
    permuted (`step.generated_labels`)."""
    mesh = sharding.make_mesh()
    local = BATCH // mesh.size
    assert local >= 2  # a permutation to see
    config = _config("")
    _, _, G, D = loop.build_networks(config.model, RES, 3, 4)
    hp = loop.hyperparameters(config.train, config.augment)
    opts = step_lib.make_optimizers(hp)
    g_vars, d_vars = jax.jit(lambda: state_lib.init_variables(G, D, jax.random.key(0), RES, 3,
                                                              4))()
    state = sharding.replicate(state_lib.create_state(g_vars, d_vars, *opts,
                                                      jax.random.key(1)), mesh)
    seen: list = []
    steps = step_lib.make_train_steps(_spy(G, seen), D, hp, mesh)
    classes = np.random.default_rng(0).integers(0, 4, BATCH)
    batch = sharding.global_batch({"image": np.zeros((BATCH, RES, RES, 3), np.uint8),
                                   "label": np.eye(4, dtype=np.float32)[classes]}, mesh)
    state, _ = steps.run_phase["Dmain"](state, batch)  # (donates its state)
    jax.effects_barrier()
    assert sorted(d for d, _ in seen) == list(range(mesh.size))
    for device, c in seen:
        assert c.shape == (local, 4) and np.all(c.sum(1) == 1)
        mine = classes[device * local:(device + 1) * local]
        assert collections.Counter(c.argmax(1)) == collections.Counter(mine)
    # Frequencies that give the batch's classes 0-2 no weight: every fake is class 3.
    seen.clear()
    steps = step_lib.make_train_steps(_spy(G, seen), D, hp, mesh,
                                      class_probs=(0.0, 0.0, 0.0, 1.0))
    steps.run_phase["Dmain"](state, batch)
    jax.effects_barrier()
    assert sorted(d for d, _ in seen) == list(range(mesh.size))
    assert all(np.array_equal(c, np.eye(4, dtype=np.float32)[[3] * local]) for _, c in seen)


def test_partial_merge_copies_widens_and_lists_the_rest():
    rng = np.random.default_rng(0)
    old = {"params": {"fc0": {"weight": rng.normal(size=(3, 2)), "bias": np.ones(2)},
                      "out": {"weight": rng.normal(size=(2, 1))},
                      "gone": {"weight": np.zeros(1)}},
           "buffers": {"w_avg": np.full(2, 7.0)}}
    new = {"params": {"fc0": {"weight": np.zeros((5, 2), np.float32),
                              "bias": np.zeros(2, np.float32)},
                      "out": {"weight": np.zeros((2, 4), np.float32)},
                      "embed": {"weight": np.full((4, 2), 3, np.float32)}},
           "buffers": {"w_avg": np.zeros(2, np.float32)}}
    merged, report = partial_resume.merge(new, old)
    assert report.copied == ("params/fc0.bias", "buffers/w_avg")
    assert report.widened == ("params/fc0.weight",)
    assert report.fresh == ("params/out.weight", "params/embed.weight")
    assert report.dropped == ("params/gone.weight",)
    np.testing.assert_array_equal(merged["params"]["embed"]["weight"], 3)
    np.testing.assert_array_equal(merged["buffers"]["w_avg"], 7)
    assert merged["params"]["fc0"]["weight"].dtype == np.float32
    # The widened equalized-lr layer (gain 1/sqrt(in)) computes what it did on the old
    # inputs, whatever the appended ones.
    x, extra = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    before = x @ old["params"]["fc0"]["weight"] / np.sqrt(3)
    after = np.concatenate([x, extra], 1) @ merged["params"]["fc0"]["weight"] / np.sqrt(5)
    np.testing.assert_allclose(after, before, rtol=1e-6)
    line = partial_resume.notice({"G": report}, "snap")
    assert line == ("resume_partial from snap: G copied 2/5, widened fc0.weight, fresh out "
                    "embed, not used gone")


def _config(bundle: str) -> object:
    """One iteration of a tiny conditional model on Male x Young classes of the test faces,
    from `bundle` with `resume_partial`; no regularisers, no style mixing (two small
    compilations: G main, D main)."""
    config = common.stylegan2_config(
        batch_size=BATCH, gamma=1.0, ema_kimg=0.1, ema_rampup=0.05, mbstd=1,
        fmaps=128 / 32768, mapping_layers=2, total_kimg=BATCH / 1000, z_dim=16, w_dim=16,
        channel_max=16)
    config.model.G_kwargs.synthesis_kwargs.num_fp16_res = 0
    config.data.update(name=str(FACES), split="train[:64]", resolution=RES, use_labels=True,
                       attribute_labels=PAIR)
    config.train.update(g_reg_interval=None, d_reg_interval=None, pl_weight=0.0,
                        r1_gamma=0.0, style_mixing_prob=0.0)
    config.augment.pipe = ""
    config.log.update(kimg_per_tick=BATCH / 1000, metrics=(), grid_size=(4, 2), progress=False)
    config.resume_pkl, config.resume_partial = bundle, True
    return config


def test_conditional_run_from_an_unconditional_snapshot(tmp_path, caplog, monkeypatch):
    """One iteration on Male x Young classes from an unconditional export: the batches carry
    the table's classes one-hot, what matches is copied and the rest listed in one warning
    line, the conditional G starts as the unconditional one (first grid), and the snapshot is
    a 4-class generator."""
    config = _config(str(tmp_path / "uncond"))
    g_kwargs, d_kwargs, G, D = loop.build_networks(config.model, RES, 3, 0)
    g_vars, d_vars = jax.jit(lambda: state_lib.init_variables(G, D, jax.random.key(3), RES,
                                                              3, 0))()  # eagerly: slow
    for key, kwargs, variables in (("G_ema", g_kwargs, g_vars), ("D", d_kwargs, d_vars)):
        sample.export_variables(config.resume_pkl, key, kwargs, variables)
    reals, put = [], sharding.global_batch
    monkeypatch.setattr(sharding, "global_batch",
                        lambda batch, mesh: reals.append(batch["label"]) or put(batch, mesh))
    workdir = str(tmp_path / "cond")
    with caplog.at_level(logging.WARNING):
        record = loop.train(config, workdir)

    notices = [r.getMessage() for r in caplog.records if "resume_partial" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "widened mapping.fc0.weight, fresh mapping.embed;" in notices[0]
    assert "fresh b4.out mapping.embed" in notices[0]
    assert np.isfinite(record["Loss/G/loss"]) and np.isfinite(record["Loss/D/loss"])

    (real,) = reals  # one iteration: one batch of one-hot classes of the table
    table = _table_classes(data_input.open_source(FACES, "train[:64]")[0].files)
    assert real.shape == (BATCH, 4) and np.all(real.sum(1) == 1)
    assert set(real.argmax(1)) <= set(table)

    g = sample.load(os.path.join(workdir, "snapshots", "network-snapshot-000000.016"))
    assert g.c_dim == 4 and sample.labels(g, 3, 1).tolist() == [[0, 0, 0, 1]]
    # fakes_init: the conditional G (any labels) is the unconditional G at the same z.
    start = sample.load(config.resume_pkl)
    z, _ = loop._grid_latents(start.module, (4, 2), np.zeros((0, 0)), config.seed)
    want = sample.grid(sample.to_uint8(sample.synthesize(start, sample.mapping(start, z),
                                                         noise_mode="const")), 4)
    got = Image.open(os.path.join(workdir, "samples", "fakes_init.png"))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1)
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["data"]["attribute_labels"] == list(PAIR)


def test_training_and_metrics_draw_classes_as_the_stream_holds_them():
    section = {"name": str(FACES), "split": "train[:64]", "resolution": RES,
               "attribute_labels": PAIR}
    source, _ = data_input.open_source(FACES, "train[:64]", resolution=RES,
                                       attribute_labels=PAIR)
    want = np.bincount(_table_classes(source.files), minlength=4) / 64
    np.testing.assert_allclose(loop._class_frequencies(section), want)
    np.testing.assert_allclose(evaluation.dataset_class_probs(section, 4), want)
    # Unconditional, or a dataset with another number of classes: uniform (None).
    assert evaluation.dataset_class_probs(section, 0) is None
    assert evaluation.dataset_class_probs(section, 3) is None
