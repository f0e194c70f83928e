"""Shared pytest fixtures and paths."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


def reference_dir() -> pathlib.Path:
    """Directory of official reference vectors (FLAXGAN_REFERENCE_DIR, default tests/data/reference)."""
    return pathlib.Path(os.environ.get("FLAXGAN_REFERENCE_DIR", TEST_DATA / "reference"))


@pytest.fixture(scope="session")
def test_data_dir() -> pathlib.Path:
    return TEST_DATA
