"""make_dataset / dataset_metadata: prepared TFDS data and plain image folders, via grain."""

import json
import shutil

import grain
import numpy as np
import pytest

from data_pipelines import input as dp_input
from tests.data_pipelines.conftest import CELEBA, MISC, NONFACES


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    (root / "faces").mkdir()
    (root / "animals").mkdir()
    for i in range(1, 11):
        shutil.copy(CELEBA / f"00105{i - 1}.jpg", root / "faces")
    for path in sorted(NONFACES.glob("*.jpg"))[:2]:
        shutil.copy(path, root / "animals")
    shutil.copy(MISC / "truncated_001602.jpg", root / "animals" / "zz_bad.jpg")
    return root


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_block_shuffle_permutes_every_block_anew():
    # An epoch-wise shuffle (block = the parent's length), repeated: each epoch is a new
    # permutation of the 6 indices, the same for the same seed.
    epochs = lambda seed: [dp_input.BlockShuffle(grain.MapDataset.range(6), seed=seed)
                           .repeat(4)[i] for i in range(24)]
    got = np.reshape(epochs(1), (4, 6))
    assert all(sorted(row) == list(range(6)) for row in got)
    assert len({tuple(row) for row in got}) > 1 and epochs(1) == got.ravel().tolist()
    assert epochs(2) != epochs(1)
    # Windows of 4 over a longer dataset: indices stay inside their window.
    windows = dp_input.BlockShuffle(grain.MapDataset.range(100), seed=3, block_size=4)
    assert len(windows) == 100
    for start in range(0, 100, 4):
        assert sorted(windows[i] for i in range(start, start + 4)) == list(
            range(start, start + 4))
    assert [windows[i] for i in range(100)] != list(range(100))
    # A pass's last, shorter window is permuted within itself, on every pass.
    ragged = dp_input.BlockShuffle(grain.MapDataset.range(10), seed=3, block_size=4).repeat(3)
    for start in range(0, 30, 10):
        assert [sorted(ragged[i] for i in range(start + lo, start + hi)) for lo, hi in
                ((0, 4), (4, 8), (8, 10))] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="block size >= 1"):
        dp_input.BlockShuffle(grain.MapDataset.range(0), seed=0)


def test_tfds_batches_and_metadata(celeba_mtcnn, tfds_dir):
    meta = dp_input.dataset_metadata("celeba_faces/mtcnn_256", data_dir=str(tfds_dir))
    assert (meta.resolution, meta.channels, meta.c_dim, meta.num_examples) == (256, 3, 0, 16)
    it = dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 4, data_dir=str(tfds_dir),
                               resolution=64, one_hot=True)
    batch = next(it)
    assert batch["image"].shape == (4, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4, 0) and batch["label"].dtype == np.float32
    # The prepared folder itself works too.
    it = dp_input.make_dataset(celeba_mtcnn.data_dir, "validation", 5, shuffle=False,
                               process_index=0, process_count=1)
    assert next(it)["image"].shape == (5, 256, 256, 3)


def test_epochs_shuffle_and_shards(celeba_mtcnn, tfds_dir):
    def ids(batches):
        return [tuple(b["image"][:, 128, 128, 0]) for b in batches]

    kwargs = dict(data_dir=str(tfds_dir), num_epochs=2, seed=3)
    one = _take(dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 8, **kwargs,
                                      process_index=0, process_count=1), 4)
    pixels = [b["image"][:, 100:110, 100:110].reshape(8, -1).sum(1) for b in one]
    first, second = np.concatenate(pixels[:2]), np.concatenate(pixels[2:])
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    again = _take(dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 8, **kwargs,
                                        process_index=0, process_count=1), 4)
    assert ids(one) == ids(again)  # deterministic given the seed
    shard = [np.concatenate([b["image"][:, 100:110, 100:110].reshape(4, -1).sum(1)
                             for b in _take(dp_input.make_dataset(
                                 "celeba_faces/mtcnn_256", "train", 4, data_dir=str(tfds_dir),
                                 num_epochs=1, process_index=p, process_count=2), 2)])
             for p in range(2)]
    assert not set(shard[0]) & set(shard[1])
    assert sorted(np.concatenate(shard)) == sorted(first)


def test_resume_from_state(celeba_mtcnn, tfds_dir):
    kwargs = dict(data_dir=str(tfds_dir), xflip=True, seed=7, process_index=0, process_count=1)
    it = dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 3, **kwargs)
    _take(it, 4)
    state = json.loads(json.dumps(it.get_state()))
    expected = _take(it, 3)
    resumed = dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 3, **kwargs)
    resumed.set_state(state)
    for a, b in zip(expected, _take(resumed, 3), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_xflip_mirrors_about_half(celeba_mtcnn, tfds_dir):
    kwargs = dict(data_dir=str(tfds_dir), shuffle=False, num_epochs=1, process_index=0,
                  process_count=1)
    plain = next(dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 16, **kwargs))
    flipped = next(dp_input.make_dataset("celeba_faces/mtcnn_256", "train", 16, xflip=True,
                                         **kwargs))
    same = [np.array_equal(a, b) for a, b in zip(plain["image"], flipped["image"], strict=True)]
    mirrored = [np.array_equal(a[:, ::-1], b)
                for a, b in zip(plain["image"], flipped["image"], strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 3 <= sum(mirrored) <= 13


def test_image_folder_with_labels(folder):
    meta = dp_input.dataset_metadata(folder, resolution=32, folder_labels=True)
    assert (meta.resolution, meta.channels, meta.c_dim, meta.num_examples) == (32, 3, 2, 13)
    assert meta.label_names == ("animals", "faces")
    it = dp_input.make_dataset(folder, batch_size=13, resolution=32, folder_labels=True,
                               one_hot=True, shuffle=False, process_index=0, process_count=1)
    batch = next(it)
    assert batch["image"].shape == (13, 32, 32, 3)
    # The corrupt animals/zz_bad.jpg is replaced by the next readable file of its class.
    assert batch["label"].sum(0).tolist() == [3.0, 10.0]
    plain = next(dp_input.make_dataset(folder, batch_size=2, resolution=16, process_index=0,
                                       process_count=1))
    assert plain["label"].tolist() == [0, 0] and plain["image"].shape == (2, 16, 16, 3)


def test_split_slices_select_fixed_files(folder, celeba_mtcnn, tfds_dir):
    faces = folder / "faces"
    names = lambda split: [p.name for p in dp_input.open_source(faces, split)[0].files]
    every = names("train")
    assert len(every) == 10 and every == sorted(every)
    held_out, rest = names("holdout[-3:]"), names("train[:-3]")
    assert held_out == every[-3:] and rest == every[:-3]  # disjoint, fixed by the file names
    assert names("train[:50%]") == every[:5] and names("x[20%:40%]") == every[2:4]
    assert dp_input.dataset_metadata(faces, "train[-3:]", resolution=8).num_examples == 3
    batch = next(dp_input.make_dataset(faces, "train[-3:]", 3, resolution=8, shuffle=False,
                                       process_index=0, process_count=1))
    assert batch["image"].shape == (3, 8, 8, 3)
    # TFDS names take the same slices (TFDS's own split slicing).
    full = dp_input.dataset_metadata("celeba_faces/mtcnn_256", "train", data_dir=str(tfds_dir))
    part = dp_input.dataset_metadata("celeba_faces/mtcnn_256", "train[:2]",
                                     data_dir=str(tfds_dir))
    assert part.num_examples == 2 < full.num_examples
    for bad in ("train[::2]", "train[a:]", "tr ain[", "train[:0]"):
        with pytest.raises(ValueError, match="split"):
            dp_input.open_source(faces, bad)


def test_crop_box_cuts_before_resizing(folder):
    faces = folder / "faces"
    whole = dp_input.ImageFolderSource(faces)[0]["image"]  # 89 x 109 aligned CelebA
    h, w = whole.shape[:2]
    box = (0.25, 0.5, 0.75, 1.0)
    cut = dp_input.ImageFolderSource(faces, crop_box=box)[0]["image"]
    np.testing.assert_array_equal(cut, whole[round(h / 2):, round(w / 4):round(3 * w / 4)])
    assert dp_input.ImageFolderSource(faces, 16, crop_box=box)[0]["image"].shape == (16, 16, 3)
    for bad in ((0.5, 0, 0.4, 1), (0, 0, 1), (-0.1, 0, 1, 1)):
        with pytest.raises(ValueError, match="crop_box"):
            dp_input.ImageFolderSource(faces, crop_box=bad)


def test_errors(folder, tfds_dir, celeba_mtcnn, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        dp_input.make_dataset(folder, batch_size=0, resolution=8)
    with pytest.raises(ValueError, match="no split"):
        dp_input.make_dataset("celeba_faces/mtcnn_256", "dev", 2, data_dir=str(tfds_dir))
    with pytest.raises(ValueError, match="process_index"):
        dp_input.make_dataset(folder, batch_size=2, resolution=8, process_index=2,
                              process_count=2)
    with pytest.raises(ValueError, match="class sub-folder"):
        (tmp_path / "sub").mkdir()
        shutil.copy(CELEBA / "001001.jpg", tmp_path)
        shutil.copy(CELEBA / "001002.jpg", tmp_path / "sub")
        dp_input.ImageFolderSource(tmp_path, folder_labels=True)
    with pytest.raises(FileNotFoundError, match="expected an image folder"):
        dp_input.ImageFolderSource(folder / "missing")


# ----------------------------------------------------------------------------------------------
# Weighted sampling across the sources of an image_mix dataset.


@pytest.fixture(scope="module")
def image_mix(tmp_path_factory):
    """6 faces (weight 1) + 2 animals (weight 3): uniform sampling gives 25% animals, the
    weights 75%."""
    from data_pipelines import build

    root = tmp_path_factory.mktemp("image_mix")
    manual = root / "manual"
    (manual / "faces").mkdir(parents=True)
    (manual / "animals").mkdir()
    for i in range(1, 7):
        shutil.copy(CELEBA / f"00104{i}.jpg", manual / "faces")
    for path in sorted(NONFACES.glob("*.jpg"))[:2]:
        shutil.copy(path, manual / "animals")
    (manual / "sources.json").write_text(json.dumps(
        {"sources": [{"name": "faces"}, {"name": "animals", "weight": 3.0}]}))
    return build.build("image_mix", manual, "resize_64", root / "out").data_dir


def _fraction(it, batches: int, label: int = 1) -> float:
    labels = np.concatenate([b["label"] for b in _take(it, batches)])
    return float(np.mean(labels == label))


def test_image_mix_source_weights(image_mix):
    kwargs = dict(process_index=0, process_count=1, seed=5, resolution=16)
    meta = dp_input.dataset_metadata(image_mix)
    assert meta.label_names == ("faces", "animals") and meta.source_weights == (1.0, 3.0)
    np.testing.assert_array_equal(np.sort(dp_input.source_labels(image_mix)), [0] * 6 + [1] * 2)
    # Stored weights by default: 3/4 of the examples are animals (uniform would give 1/4).
    assert abs(_fraction(dp_input.make_dataset(image_mix, "train", 8, **kwargs), 40) - 0.75) \
        < 0.02
    assert abs(_fraction(dp_input.make_dataset(image_mix, "train", 8, source_weights=None,
                                               **kwargs), 40) - 0.25) < 0.02
    assert abs(_fraction(dp_input.make_dataset(image_mix, "train", 8, source_weights={
        "faces": 1, "animals": 1}, **kwargs), 40) - 0.5) < 0.02
    only_faces = dp_input.make_dataset(image_mix, "train", 8, source_weights={
        "faces": 1, "animals": 0}, **kwargs)
    assert _fraction(only_faces, 5) == 0.0
    # Batches mix the sources (not a fixed pattern) and every example is drawn.
    batches = _take(dp_input.make_dataset(image_mix, "train", 4, **kwargs), 50)
    assert len({tuple(b["label"]) for b in batches}) > 3
    pixels = {b["image"][i].tobytes() for b in batches for i in range(4)}
    assert len(pixels) == 8
    # One epoch is as many examples as the split holds, in the weights' proportions.
    epoch = np.concatenate([b["label"] for b in dp_input.make_dataset(
        image_mix, "train", 1, num_epochs=1, **kwargs)])
    assert len(epoch) == 8 and epoch.sum() == 6
    # Processes draw from disjoint shards of each source.
    shards = [{b["image"][0].tobytes() for b in _take(dp_input.make_dataset(
        image_mix, "train", 1, process_index=p, process_count=2, seed=5, resolution=16), 40)}
        for p in range(2)]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 8


def test_image_mix_weights_deterministic_and_resumable(image_mix):
    kwargs = dict(process_index=0, process_count=1, seed=9, resolution=16, xflip=True)
    one = _take(dp_input.make_dataset(image_mix, "train", 4, **kwargs), 6)
    two = _take(dp_input.make_dataset(image_mix, "train", 4, **kwargs), 6)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = _take(dp_input.make_dataset(image_mix, "train", 4, **{**kwargs, "seed": 10}), 6)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(one, other, strict=True))
    it = dp_input.make_dataset(image_mix, "train", 4, **kwargs)
    _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))
    resumed = dp_input.make_dataset(image_mix, "train", 4, **kwargs)
    resumed.set_state(state)
    for a, b in zip(one[3:], _take(resumed, 3), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_source_weights_errors(image_mix, folder):
    with pytest.raises(ValueError, match="exactly"):
        dp_input.make_dataset(image_mix, "train", 2, source_weights={"faces": 1.0})
    with pytest.raises(ValueError, match="weights >= 0"):
        dp_input.make_dataset(image_mix, "train", 2, source_weights={"faces": -1, "animals": 1})
    with pytest.raises(ValueError, match="labelled sources"):
        dp_input.make_dataset(folder, batch_size=2, resolution=8, source_weights={"a": 1})
    # Image folders with folder_labels take weights too (stored weights: none, uniform).
    it = dp_input.make_dataset(folder, batch_size=8, resolution=8, folder_labels=True,
                               source_weights={"animals": 1, "faces": 1}, process_index=0,
                               process_count=1)
    labels = np.concatenate([b["label"] for b in _take(it, 10)])
    assert abs(np.mean(labels == 0) - 0.5) < 0.05


def test_class_frequencies_follow_the_stream(image_mix, folder):
    # Stored weights 1:3, as the stream samples them; without weights the split's counts (6:2).
    np.testing.assert_allclose(dp_input.class_frequencies(image_mix), [0.25, 0.75])
    np.testing.assert_allclose(dp_input.class_frequencies(image_mix, source_weights=None),
                               [0.75, 0.25])
    np.testing.assert_allclose(dp_input.class_frequencies(
        image_mix, source_weights={"faces": 1, "animals": 0}), [1.0, 0.0])
    # A folder's classes are its sub-folders: animals (3 files), faces (10).
    np.testing.assert_allclose(dp_input.class_frequencies(folder, folder_labels=True),
                               [3 / 13, 10 / 13])
    assert dp_input.class_frequencies(folder).shape == (0,)
