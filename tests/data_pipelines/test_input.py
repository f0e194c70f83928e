"""make_dataset / dataset_metadata: prepared TFDS data and plain image folders, via grain."""

import json
import shutil

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
    # The corrupt animals/zz_bad.jpg is replaced by the next readable file (a face).
    assert batch["label"].sum(0).tolist() == [2.0, 11.0]
    plain = next(dp_input.make_dataset(folder, batch_size=2, resolution=16, process_index=0,
                                       process_count=1))
    assert plain["label"].tolist() == [0, 0] and plain["image"].shape == (2, 16, 16, 3)


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
