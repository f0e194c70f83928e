"""flaxgan.synth.export on a tiny network: filters, rebalancing, TFDS read-back, PNGs, and an
export interrupted mid-way that resumes without duplicated or lost images."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import input as data_input
from flaxgan import edit
from flaxgan.errors import InvalidArgument
from flaxgan.synth import export, quality
from tests.flaxgan.synth.conftest import fake_detector


class Interrupted(Exception):
    pass


def _scorers():
    """A detector that finds no face in dark images (about 1 in 8), "Male" = brighter than
    the median (the tiny network's images: mean pixel 93-190, median 139)."""
    def fn(images):
        return (images.astype(np.float32).mean(axis=(1, 2, 3)) - 139.0)[:, None]
    return export.Scorers(detector=fake_detector(min_mean=115.0),
                          labeller=edit.Labeller(("Male",), fn, "brightness"))


KW = dict(num=20, seed_start=1000, max_candidates=160, target={"Male": 0.5}, chunk_size=16,
          progress=False)


@pytest.fixture(scope="module")
def runs(tiny_g, tmp_path_factory):
    """An uninterrupted export and one stopped after two chunks, then resumed."""
    whole = tmp_path_factory.mktemp("whole")
    full = export.export_faces(tiny_g, whole, scorers=_scorers(), png_dir=whole / "png", **KW)
    part = tmp_path_factory.mktemp("part")

    def stop(done):
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        export.export_faces(tiny_g, part, scorers=_scorers(), on_chunk=stop,
                            png_dir=part / "png", **KW)
    assert sorted(p.name for p in (part / "work" / "chunks").iterdir()) == [
        "chunk-000000.npz", "chunk-000001.npz"]
    resumed = export.export_faces(tiny_g, part, scorers=_scorers(), png_dir=part / "png", **KW)
    return full, resumed


def _records(path):
    return list(tfds.builder_from_directory(path).as_data_source("train"))


def test_export_reads_back_balanced_and_filtered(runs, tiny_g):
    full, _ = runs
    records = _records(full.dataset)
    seeds = [int(r["seed"]) for r in records]
    assert len(records) == full.num == 20 and len(set(seeds)) == 20
    assert sum(r["attributes"]["Male"] for r in records) == 10  # Male=0.5 of 20, exactly
    for r in records:  # every kept image passed the filters, its scores stored with it
        assert r["scores"]["face_score"] == np.float32(0.99) and r["scores"]["landmarks_ok"] == 1
        assert r["image"].mean() > 115 and np.isnan(r["scores"]["d_score"])
    report = json.loads(open(full.report).read())
    counts = report["filters"]
    assert counts["no_face"] > 0 and sum(counts.values()) == full.candidates
    assert report["balance_exported"]["Male"] == 0.5 and report["shortfall"] == {}
    # The records are the images of their seeds.
    again = export._chunk(tiny_g, seeds[:4], 0, psi=1.0, c=None, noise_mode="const",
                          scorers=export.Scorers())
    # Re-rendered in another batch: float32 results differ by ~1e-6 between batch positions
    # (XLA CPU vectorises rows differently), which can move a pixel across a uint8 rounding
    # boundary: one level, never more.
    stored = np.stack([r["image"] for r in records[:4]]).astype(np.int16)
    assert np.abs(again["images"].astype(np.int16) - stored).max() <= 1
    batches = list(data_input.make_dataset(full.dataset, "train", 8, shuffle=False,
                                           num_epochs=1, drop_remainder=False))
    assert sum(len(b["image"]) for b in batches) == 20 and batches[0]["image"].shape[1:] == (
        16, 16, 3)
    assert sorted(p.name for p in pathlib.Path(full.png_dir).iterdir()) == sorted(
        f"seed{s:06d}.png" for s in seeds)


def test_interrupted_export_resumes_without_duplicates_or_losses(runs):
    full, resumed = runs
    a, b = _records(full.dataset), _records(resumed.dataset)
    assert [int(r["seed"]) for r in a] == [int(r["seed"]) for r in b]
    np.testing.assert_array_equal(np.stack([r["image"] for r in a]),
                                  np.stack([r["image"] for r in b]))
    assert resumed.summary["filters"] == full.summary["filters"]
    assert resumed.candidates == full.candidates


def test_resume_refuses_other_settings_and_bad_arguments(runs, tiny_g, tmp_path):
    full, _ = runs
    out = full.report.rsplit("/", 1)[0]
    with pytest.raises(InvalidArgument, match="truncation_psi"):
        export.export_faces(tiny_g, out, scorers=_scorers(), truncation_psi=0.5, **KW)
    with pytest.raises(InvalidArgument, match="needs the attribute classifier"):
        export.export_faces(tiny_g, tmp_path, 5, target={"Male": 0.5})
    with pytest.raises(InvalidArgument, match="unconditional"):
        export.export_faces(tiny_g, tmp_path, 5, c=1)
    with pytest.raises(InvalidArgument, match="no candidate passed the filters"):
        export.export_faces(tiny_g, tmp_path / "none", 2, max_candidates=4, progress=False,
                            thresholds=quality.Thresholds(min_std=1e9))
