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


def read_rgb(path: pathlib.Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def celeba_files() -> list[pathlib.Path]:
    return sorted(CELEBA.glob("*.jpg"))


@pytest.fixture(scope="session")
def nonface_files() -> list[pathlib.Path]:
    return sorted(NONFACES.glob("*.jpg"))
