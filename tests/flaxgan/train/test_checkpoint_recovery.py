"""Resume after a kill between a tick's log line and its checkpoint; unique snapshot exports
at fractional-kimg ticks.

One tiny run (the networks of test_loop, so its compiled steps are shared within a process)
writes checkpoints 2 and 4 (ticks 1 and 2, 0.016 and 0.032 kimg); every test works on a copy.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from experiments import eval as eval_main
from flaxgan import sample
from flaxgan.train import checkpoint, loop
from tests.flaxgan.train.test_loop import BATCH, _config, _records

FIRST_STEP, LAST_STEP = 2, 4  # the run's checkpoints (iterations); a tick is 2 iterations


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("base"))
    loop.train(_config(total_kimg=BATCH * LAST_STEP / 1000), workdir)
    return workdir


@pytest.fixture
def workdir(base_run, tmp_path) -> str:
    """A copy of the base run (links copied as links) to damage and resume."""
    copy = str(tmp_path / "run")
    shutil.copytree(base_run, copy, symlinks=True)
    return copy


def _ticks(workdir: str) -> list[int]:
    return [r["tick"] for r in _records(workdir)]


def _checkpoints(workdir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _g_ema(snapshot: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(snapshot, "G_ema.npz")) as f:
        return {name: f[name] for name in f.files}


# ------------------------------------------------------------------------------------- tests


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the loop catches it."""


def test_kill_between_tick_log_and_checkpoint_logs_the_tick_once(workdir, monkeypatch):
    save = checkpoint.Checkpointer.save

    def save_or_die(self, step, *args, **kwargs):
        if step == 6:
            raise _Killed  # tick 3 is in metrics.jsonl, its checkpoint never written
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpointer, "save", save_or_die)
    with pytest.raises(_Killed):
        loop.train(_config(total_kimg=BATCH * 6 / 1000), workdir)
    assert _ticks(workdir) == [1, 2, 3]
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"tick": 4, "ki')  # and a line cut off mid-write
    monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
    record = loop.train(_config(total_kimg=BATCH * 6 / 1000), workdir)
    assert record["tick"] == 3 and _ticks(workdir) == [1, 2, 3]


def test_snapshot_names_are_unique_at_fractional_ticks(base_run):
    assert [loop.snapshot_name(n) for n in (16, 1000, 1500, 123456)] == [
        "network-snapshot-000000.016", "network-snapshot-000001", "network-snapshot-000001.500",
        "network-snapshot-000123.456"]
    names = [loop.snapshot_name(n) for n in (500, 1000, 1500, 2000, 10500)]
    assert sorted(names) == names  # sorted by name is sorted by images seen
    snapshots = os.path.join(base_run, "snapshots")
    assert sorted(os.listdir(snapshots)) == [
        "network-snapshot-000000", "network-snapshot-000000.016", "network-snapshot-000000.032"]
    first, last = (_g_ema(os.path.join(snapshots, f"network-snapshot-000000.0{n}"))
                   for n in ("16", "32"))
    assert any(not np.array_equal(first[k], last[k]) for k in first)  # two exports, both kept
    # The whole-kimg name links to the latest export in that kimg; readers find the latest.
    assert os.readlink(os.path.join(snapshots, "network-snapshot-000000")) == \
        "network-snapshot-000000.032"
    assert eval_main.latest_snapshot(base_run).endswith("network-snapshot-000000.032")
    assert sample.load(os.path.join(snapshots, "network-snapshot-000000")).z_dim == 16
