"""Resume from damaged checkpoints, after a kill between a tick's log line and its checkpoint,
with another batch size; unique snapshot exports at fractional-kimg ticks.

One tiny run (the networks of test_loop, so its compiled steps are shared within a process)
writes checkpoints 2 and 4 (ticks 1 and 2, 0.016 and 0.032 kimg); every test works on a copy.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil

import numpy as np
import pytest

from experiments import eval as eval_main
from flaxgan import sample
from flaxgan.train import checkpoint, loop
from tests.flaxgan.train import tiny_run as tiny

FIRST_STEP, LAST_STEP = 2, 4  # the run's checkpoints (iterations); a tick is 2 iterations


@pytest.fixture
def base_run(tiny_run) -> str:
    """The shared 4-iteration run (LAST_STEP), never modified here."""
    return tiny_run[0]


@pytest.fixture
def workdir(base_run, tmp_path) -> str:
    """A copy of the base run (links copied as links) to damage and resume."""
    copy = str(tmp_path / "run")
    shutil.copytree(base_run, copy, symlinks=True)
    return copy


def _ticks(workdir: str) -> list[int]:
    return [r["tick"] for r in tiny.records(workdir)]


def _checkpoints(workdir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _g_ema(snapshot: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(snapshot, "G_ema.npz")) as f:
        return {name: f[name] for name in f.files}


# ------------------------------------------------------------------------------ damage kinds


def _data_files(workdir: str, step: int | str) -> list[str]:
    """The OCDBT data files of a checkpoint's state. All of them are damaged below: the process
    database may also hold files the merged manifest no longer references."""
    return sorted(glob.glob(os.path.join(workdir, "checkpoints", str(step), "state",
                                         "ocdbt.process_0", "d", "*")))


def _truncate_data(workdir: str, step: int) -> None:
    for path in _data_files(workdir, step):
        os.truncate(path, os.path.getsize(path) // 2)


def _overwrite_data(workdir: str, step: int) -> None:
    for path in _data_files(workdir, step):
        with open(path, "r+b") as f:
            f.write(np.random.RandomState(0).bytes(os.path.getsize(path)))


def _empty_metadata(workdir: str, step: int) -> None:
    open(os.path.join(workdir, "checkpoints", str(step), "state", "_METADATA"), "w").close()


def _delete_meta(workdir: str, step: int) -> None:
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(step), "meta"))


DAMAGES = {"truncated_data": _truncate_data, "overwritten_data": _overwrite_data,
           "emptied_metadata": _empty_metadata, "deleted_meta": _delete_meta}


def _skip_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "damaged checkpoint" in r.getMessage()]


# ------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_latest_checkpoint_falls_back_and_is_kept_aside(workdir, damage, caplog):
    DAMAGES[damage](workdir, LAST_STEP)
    caplog.set_level(logging.WARNING)
    # Resume to where the intact checkpoint is: restores it and stops (no training needed).
    assert loop.train(tiny.config(total_kimg=tiny.BATCH * FIRST_STEP / 1000), workdir) == {}
    lines = _skip_lines(caplog)
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert f"checkpoints/{LAST_STEP} (" in lines[0]
    assert f"kept as {LAST_STEP}.corrupt; resuming from checkpoint {FIRST_STEP}" in lines[0]
    assert _checkpoints(workdir) == [str(FIRST_STEP), f"{LAST_STEP}.corrupt"]
    assert checkpoint.Checkpointer(workdir).latest_step() == FIRST_STEP
    assert _ticks(workdir) == [1]  # tick 2 was checkpointed in the damaged one: logged again


def test_fallback_then_training_matches_the_undamaged_run(base_run, workdir, caplog):
    """Truncated data in checkpoint 4: resume from 2, redo tick 2 bit-exactly, log it once."""
    _truncate_data(workdir, LAST_STEP)
    caplog.set_level(logging.WARNING)
    record = loop.train(tiny.config(total_kimg=tiny.BATCH * LAST_STEP / 1000), workdir)
    assert record["tick"] == 2 and len(_skip_lines(caplog)) == 1
    assert _ticks(workdir) == [1, 2]
    assert _checkpoints(workdir) == [str(FIRST_STEP), str(LAST_STEP), f"{LAST_STEP}.corrupt"]
    want = _g_ema(os.path.join(base_run, "snapshots", "network-snapshot-000000.032"))
    got = _g_ema(os.path.join(workdir, "snapshots", "network-snapshot-000000.032"))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # The kept-aside copy still holds the damage (never repaired, never deleted).
    sizes = [os.path.getsize(p) for p in _data_files(workdir, f"{LAST_STEP}.corrupt")]
    assert sizes == [os.path.getsize(p) // 2 for p in _data_files(base_run, LAST_STEP)]


def test_no_checkpoint_restores_is_one_line_and_nothing_moves(workdir):
    for step in (FIRST_STEP, LAST_STEP):
        _empty_metadata(workdir, step)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint restores") as error:
        loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000), workdir)
    message = str(error.value)
    assert "\n" not in message and message.startswith(workdir)
    assert f"checkpoint {LAST_STEP}: " in message and f"checkpoint {FIRST_STEP}: " in message
    assert _checkpoints(workdir) == [str(FIRST_STEP), str(LAST_STEP)]


def test_checkpoint_of_another_model_sets_nothing_aside(workdir):
    with pytest.raises(checkpoint.CheckpointError, match="does not match") as error:
        loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000, channel_max=8), workdir)
    assert "\n" not in str(error.value)
    assert _checkpoints(workdir) == [str(FIRST_STEP), str(LAST_STEP)]


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
        loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000), workdir)
    assert _ticks(workdir) == [1, 2, 3]
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"tick": 4, "ki')  # and a line cut off mid-write
    monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
    record = loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000), workdir)
    assert record["tick"] == 3 and _ticks(workdir) == [1, 2, 3]


def test_batch_size_change_needs_the_flag(workdir, caplog):
    config = tiny.config(total_kimg=tiny.BATCH * LAST_STEP / 1000)
    config.train.batch_size = 2 * tiny.BATCH
    with pytest.raises(checkpoint.CheckpointError, match="allow_batch_size_change") as error:
        loop.train(config, workdir)
    assert "\n" not in str(error.value) and f"train.batch_size={tiny.BATCH}" in str(error.value)
    config.train.allow_batch_size_change = True
    caplog.set_level(logging.WARNING)
    assert loop.train(config, workdir) == {}  # already at total_kimg: restore, notice, stop
    notices = [r.getMessage() for r in caplog.records if "batch_size changes" in r.getMessage()]
    assert len(notices) == 1 and f"from {tiny.BATCH} (checkpoint) to {2 * tiny.BATCH}" in notices[0]


@pytest.mark.parametrize(("old", "new", "want"), [(8, 16, 2), (16, 24, 3), (16, 8, 8)])
def test_batch_size_change_keeps_the_images_seen_of_the_data_position(old, new, want):
    meta = {"config": json.dumps({"train": {"batch_size": old}})}  # a checkpoint without the key
    data = {"iterator": {"next_index": 4}}
    got = loop._resume_batch_size(meta, data, new, True, "run")
    assert got == {"iterator": {"next_index": want}}  # 4 * old images, rounded up
    assert loop._resume_batch_size({"batch_size": old}, data, old, False, "run") is data


def test_snapshot_kimg_reads_snapshot_names_back():
    for nimg in (16, 1000, 1500, 123456, 560000):
        assert loop.snapshot_kimg(f"runs/x/snapshots/{loop.snapshot_name(nimg)}/") == nimg / 1000
    assert loop.snapshot_kimg("celeba32") is None
    assert loop.snapshot_kimg("network-snapshot-000001.tmp") is None


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
