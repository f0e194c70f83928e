"""Shared pytest fixtures and paths."""

import json
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


def reference_dirs() -> list[pathlib.Path]:
    """Every directory whose reference vectors the parity tests check.

    FLAXGAN_REFERENCE_DIR (one or more directories joined by os.pathsep) when set; otherwise the
    vendored official files plus the extra configurations recorded with tools/make_reference.py.
    """
    if "FLAXGAN_REFERENCE_DIR" in os.environ:
        return [pathlib.Path(p) for p in os.environ["FLAXGAN_REFERENCE_DIR"].split(os.pathsep) if p]
    return [TEST_DATA / "reference", TEST_DATA / "reference_extra"]


def reference_files(family: str) -> list[pathlib.Path]:
    """The `.npz` reference files whose generator belongs to `family` ('stylegan2'/'stylegan3').

    The family comes from the generator class name in the matching `.json`, never the file name.
    """
    files = []
    for directory in reference_dirs():
        for npz in sorted(directory.glob("*.npz")):
            meta = json.loads(npz.with_suffix(".json").read_text())
            is_sg3 = meta["G_kwargs"]["class_name"].endswith("networks_stylegan3.Generator")
            if (family == "stylegan3") == is_sg3:
                files.append(npz)
    return files


@pytest.fixture(scope="session")
def test_data_dir() -> pathlib.Path:
    return TEST_DATA
