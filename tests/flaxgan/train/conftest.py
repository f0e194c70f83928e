"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest

from tests.flaxgan.train import tiny_run as tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[str, dict]:
    """`(workdir, last tick record)` of 4 iterations of `tiny_run.config` (2 ticks, checkpoints
    at steps 2 and 4). Read-only: tests that resume or damage it work on a copy."""
    from flaxgan.train import loop  # noqa: PLC0415 (collection needs no JAX programs)

    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    record = loop.train(tiny.config(total_kimg=tiny.BATCH * 4 / 1000), workdir)
    return workdir, record
