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
from flaxgan.train import loop, partial_resume, sharding
from flaxgan.train import state as state_lib
from tests.conftest import TEST_DATA

FACES = TEST_DATA / "celeba_small"
PAIR = ("Male", "Young")
RES, BATCH = 16, 16


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
    """One iteration on Male x Young classes from an unconditional export: what matches is
    copied and the rest listed in one warning line; the conditional G starts as the
    unconditional one (first grid); every generated image's label is one of the real batch's
    labels on its device, permuted (`step.gen_labels`: a draw from the training stream's
    label distribution, the official `training_set.get_label(random index)` in
    distribution); the snapshot is a 4-class generator."""
    config = _config(str(tmp_path / "uncond"))
    g_kwargs, d_kwargs, G, D = loop.build_networks(config.model, RES, 3, 0)
    g_vars, d_vars = jax.jit(lambda: state_lib.init_variables(G, D, jax.random.key(3), RES,
                                                              3, 0))()  # eagerly: slow
    for key, kwargs, variables in (("G_ema", g_kwargs, g_vars), ("D", d_kwargs, d_vars)):
        sample.export_variables(config.resume_pkl, key, kwargs, variables)
    seen, reals = [], []
    build, put, mesh = loop.build_networks, sharding.global_batch, sharding.make_mesh
    # One device: the 8 fake ones multiply the checkpoint's per-shard work (hundreds of tiny
    # compilations) for nothing this test looks at; the label rule is per device anyway.
    monkeypatch.setattr(sharding, "make_mesh", lambda *a, **k: mesh(jax.devices()[:1]))
    monkeypatch.setattr(loop, "build_networks", lambda *a: (
        lambda g_kw, d_kw, g, d: (g_kw, d_kw, _spy(g, seen), d))(*build(*a)))
    monkeypatch.setattr(sharding, "global_batch",
                        lambda batch, mesh: reals.append(batch["label"]) or put(batch, mesh))
    workdir = str(tmp_path / "cond")
    with caplog.at_level(logging.WARNING):
        record = loop.train(config, workdir)
    jax.effects_barrier()

    notices = [r.getMessage() for r in caplog.records if "resume_partial" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "widened mapping.fc0.weight, fresh mapping.embed;" in notices[0]
    assert "fresh b4.out mapping.embed" in notices[0]
    assert np.isfinite(record["Loss/G/loss"]) and np.isfinite(record["Loss/D/loss"])

    (real,) = reals  # one iteration: one batch
    table = _table_classes(data_input.open_source(FACES, "train[:64]")[0].files)
    assert set(np.asarray(real).argmax(1)) <= set(table) and np.all(real.sum(1) == 1)
    assert [d for d, _ in seen] == [0, 0]  # G main and D main, on the one device
    for _, c in seen:
        assert c.shape == (BATCH, 4) and np.all(c.sum(1) == 1)
        assert collections.Counter(c.argmax(1)) == collections.Counter(real.argmax(1))

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
