"""Shared pytest fixtures and paths."""

import hashlib
import json
import os
import pathlib
import platform

import jax
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


def _cpu_signature() -> str:
    """A short hash of this CPU's model and instruction-set flags: XLA CPU code is compiled for
    the host's instruction set, so a cache written on one CPU must never serve another."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        info = sorted({ln for ln in lines if ln.startswith(("flags", "model name", "Features"))})
    except OSError:
        info = []
    text = "\n".join([platform.machine(), *info])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache for the test run (`.jax_cache/`, git-ignored).

    The two xdist workers and the entry points the tests start as subprocesses compile many of
    the same programs; each compiles once per run (and not at all on a re-run). Only programs
    that take a while to compile are stored.
    """
    if os.environ.get("FLAXGAN_TEST_NO_JAX_CACHE"):
        return
    path = REPO_ROOT / ".jax_cache" / _cpu_signature()
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))  # subprocesses
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


_enable_compilation_cache()


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
