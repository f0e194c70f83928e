"""flaxgan.synth.mixing: the layer-range rule, label propagation, labels files, replacement of
bad sources, and a style-mixing dataset of a tiny network read back through TFDS."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines import input as data_input
from flaxgan import edit, sample
from flaxgan.errors import InvalidArgument, UserError
from flaxgan.synth import mixing


def test_mix_latents_takes_exactly_the_layers_from_the_source():
    rng = np.random.RandomState(0)
    src, dst = rng.randn(5, 6, 3), rng.randn(5, 6, 3)
    out = mixing.mix_latents(src, dst, [0, 2])
    np.testing.assert_array_equal(out[:, [0, 2]], src[:, [0, 2]].astype(np.float32))
    np.testing.assert_array_equal(out[:, [1, 3, 4, 5]], dst[:, [1, 3, 4, 5]].astype(np.float32))
    ii, jj = mixing.pairs(2, 3)
    assert ii.tolist() == [0, 0, 0, 1, 1, 1] and jj.tolist() == [0, 1, 2, 0, 1, 2]
    labels = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(mixing.propagate(labels, 3), labels[ii])


def test_labels_file(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# a person's labels\nseed male glasses Curly\n3 1 -1 yes\n7 0 +1 false # x\n")
    table = mixing.read_labels_file(f)
    assert table.names == ("Male", "Eyeglasses", "Curly")  # aliases -> CelebA, others kept
    np.testing.assert_array_equal(table.labels([7, 3]), [[0, 1, 0], [1, 0, 1]])
    with pytest.raises(UserError, match="no labels for seed.*5"):
        table.labels([3, 5])
    bad = {"seed Male\n3 1 1\n": r":2: expected a seed and 1 values",
           "seed Male\nx 1\n": r":2: 'x' is not a seed",
           "seed Male\n3 maybe\n": r":2: value 'maybe'",
           "seed Male\n3 1\n3 0\n": r":3: seed 3 is labelled twice",
           "Male\n3 1\n": "header line",
           "seed Male\n": "no labelled seeds"}
    for text, message in bad.items():
        f.write_text(text)
        with pytest.raises(UserError, match=message):
            mixing.read_labels_file(f)
    with pytest.raises(UserError, match="missing.txt: labels file not readable"):
        mixing.read_labels_file(tmp_path / "missing.txt")


def test_replace_bad_seeds_takes_the_next_usable_seed():
    checked = []

    def is_good(seeds):
        checked.append(list(seeds))
        return np.array([s % 3 == 0 for s in seeds])

    seeds, replaced = mixing.replace_bad_seeds([1, 3, 4], is_good, avoid=[6],
                                               allowed=lambda s: s != 9)
    # Seeds in use (1, 3, 4, avoided 6, earlier candidates) and 9 (not allowed) are skipped:
    # position 0 tries 2, 7, 10, 12; position 2 tries 5, 8, 11, 13, 14, 15.
    assert seeds == [12, 3, 15] and replaced == {1: 12, 4: 15}
    assert checked == [[1, 3, 4], [2, 5], [7, 8], [10, 11], [12, 13], [14], [15]]
    with pytest.raises(InvalidArgument, match="no usable replacement within 2 tries"):
        mixing.replace_bad_seeds([1], lambda s: np.zeros(len(s), bool), max_tries=2)


def _brightness_labeller():
    """A stand-in classifier: 'Male' = brighter than mid-grey, 'Young' = more red than blue."""
    def fn(images):
        x = images.astype(np.float32)
        return np.stack([x.mean(axis=(1, 2, 3)) - 127.5,
                         x[..., 0].mean(axis=(1, 2)) - x[..., 2].mean(axis=(1, 2))], axis=1)
    return edit.Labeller(("Male", "Young"), fn, "brightness")


@pytest.fixture(scope="module")
def mixed(tiny_g, tmp_path_factory):
    out = tmp_path_factory.mktemp("mix")
    result = mixing.make_mix_dataset(tiny_g, out, sources=[4, 2, 9], dests=[10, 11, 12, 13],
                                     labeller=_brightness_labeller(), chunk_size=5,
                                     grid_dests=2, progress=False)
    return result, out


def test_mix_dataset_reads_back_with_propagated_labels(tiny_g, mixed):
    result, out = mixed
    layers = sample.layer_indices(tiny_g, "coarse")
    assert 0 < len(layers) < tiny_g.num_ws
    records = list(tfds.builder_from_directory(result.dataset).as_data_source("train"))
    assert len(records) == 12 and result.names == ("Male", "Young")
    ws = dict(zip([4, 2, 9, 10, 11, 12, 13], sample.mapping(
        tiny_g, sample.seeds_to_z(tiny_g, [4, 2, 9, 10, 11, 12, 13])), strict=True))
    source_images = sample.to_uint8(sample.synthesize(tiny_g, np.stack([ws[s] for s in
                                                                         (4, 2, 9)])))
    want_labels = _brightness_labeller().fn(source_images) > 0
    np.testing.assert_array_equal(result.labels, want_labels)
    for k, r in enumerate(records):  # source-major order, labels of the source
        i, j = divmod(k, 4)
        assert (r["source_seed"], r["dest_seed"]) == ([4, 2, 9][i], 10 + j)
        assert [r["attributes"][n] for n in ("Male", "Young")] == want_labels[i].tolist()
        assert r["layers"].tolist() == list(layers) and r["psi"] == 1.0
    # The images are the destinations with the source's coarse ws (the rule, composed here).
    composed = np.stack([ws[10 + j] for j in range(4)] * 3)
    for k in range(12):
        composed[k, list(layers)] = ws[[4, 2, 9][k // 4]][list(layers)]
    # Rendered here in another batch: float32 differs by ~1e-6 between batch positions (XLA CPU
    # vectorises rows differently), enough to cross a uint8 rounding boundary by one level.
    want = sample.to_uint8(sample.synthesize(tiny_g, composed)).astype(np.int16)
    assert np.abs(np.stack([r["image"] for r in records]).astype(np.int16) - want).max() <= 1
    batches = list(data_input.make_dataset(result.dataset, "train", 4, shuffle=False,
                                           num_epochs=1))
    assert sum(len(b["image"]) for b in batches) == 12
    grid = Image.open(result.grid)
    assert grid.size == (4 * 16, 3 * 16)  # sources + 1 columns, 2 shown destinations + 1 rows
    report = json.loads((out / "mix.json").read_text())
    assert report["sources"] == [4, 2, 9] and report["num_images"] == 12


def test_mix_dataset_refuses_bad_input(tiny_g, mixed, tmp_path):
    _, out = mixed
    lab = _brightness_labeller()
    with pytest.raises(InvalidArgument, match="repeat 2"):
        mixing.make_mix_dataset(tiny_g, tmp_path, [2, 2], [5], labeller=lab)
    with pytest.raises(InvalidArgument, match="exactly one"):
        mixing.make_mix_dataset(tiny_g, tmp_path, [1], [5])
    with pytest.raises(InvalidArgument, match="holds a job with other settings"):
        mixing.make_mix_dataset(tiny_g, out, [4, 2, 9], [10, 11], labeller=lab,
                                chunk_size=5, progress=False)
