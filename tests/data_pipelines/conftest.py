"""Paths to the vendored real images used by the data-pipeline tests."""

import pathlib

import numpy as np
import pytest
from PIL import Image

TEST_DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
CELEBA = TEST_DATA / "celeba_small"
VENDORED = TEST_DATA / "data_pipelines"
NONFACES = VENDORED / "nonfaces"
FACES_HQ = VENDORED / "faces_hq"
MISC = VENDORED / "misc"
REFERENCE = VENDORED / "mtcnn_reference_subset.json"
CELEBA_LANDMARKS = CELEBA / "list_landmarks_align_celeba.txt"  # official, 178x218 frame


def read_rgb(path: pathlib.Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def celeba_files() -> list[pathlib.Path]:
    return sorted(CELEBA.glob("*.jpg"))


@pytest.fixture(scope="session")
def nonface_files() -> list[pathlib.Path]:
    return sorted(NONFACES.glob("*.jpg"))


# ----------------------------------------------------------------------------------------------
# Tiny manual_dirs built from the vendored real images, and the datasets built from them.

CELEBA_TRAIN = [f"{i:06d}.jpg" for i in range(1001, 1017)]
CELEBA_VALIDATION = [f"{i:06d}.jpg" for i in range(1017, 1021)] + ["001145.jpg"]  # 2 faces
SPECIAL = {  # test split: name -> vendored file
    "009001.jpg": MISC / "grayscale_001600.jpg",
    "009002.jpg": MISC / "cmyk_001601.jpg",
    "009003.jpg": MISC / "truncated_001602.jpg",
    "009004.jpg": MISC / "not_an_image.jpg",
    "009005.jpg": MISC / "nonface_brick.jpg",
}
CELEBA_TEST = ["001401.jpg", *SPECIAL]  # 001401: no face for MTCNN (as for the reference)


def _celeba_manual_dir(root: pathlib.Path) -> pathlib.Path:
    import shutil

    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    for name in CELEBA_TRAIN + CELEBA_VALIDATION + CELEBA_TEST[:1]:
        shutil.copy(CELEBA / name, images / name)
    for name, path in SPECIAL.items():
        shutil.copy(path, images / name)
    lines = (CELEBA / "list_attr_celeba.txt").read_text().splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    names = CELEBA_TRAIN + CELEBA_VALIDATION + CELEBA_TEST
    body = [rows[n] if n in rows else n + rows["001001.jpg"][10:] for n in names]
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(names)), lines[1], *body]) + "\n")
    # The official human-annotated landmarks (178x218 frame), halved to the vendored 89x109 copies.
    lines = CELEBA_LANDMARKS.read_text().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    marks = [n + " " + " ".join(f"{float(v) / 2:g}" for v in rows[n]) for n in names if n in rows]
    (root / "list_landmarks_align_celeba.txt").write_text(
        "\n".join([str(len(marks)), lines[1], *marks]) + "\n")
    split = {**dict.fromkeys(CELEBA_TRAIN, 0), **dict.fromkeys(CELEBA_VALIDATION, 1),
             **dict.fromkeys(CELEBA_TEST, 2)}
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in split.items()))
    return root


@pytest.fixture(scope="session")
def celeba_manual_dir(tmp_path_factory) -> pathlib.Path:
    return _celeba_manual_dir(tmp_path_factory.mktemp("celeba_manual"))


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("tensorflow_datasets")


@pytest.fixture(scope="session")
def celeba_mtcnn(celeba_manual_dir, tfds_dir):
    from data_pipelines import build

    return build.build("celeba_faces", celeba_manual_dir, "mtcnn_256", tfds_dir)
