"""Two processes, one run: `jax.distributed` training on this machine equals one process.

Two processes with 4 CPU devices each (localhost coordinator, gloo collectives) train the tiny
model of `multiprocess_train` for one iteration (with R1) and save one Orbax checkpoint
together, then train again in the same workdir: both resume that checkpoint for one more
iteration. One process with 8 devices trains the same 2 iterations meanwhile, uninterrupted
(`test_loop` shows that one process resumes bit for bit). G, D and G_ema after each iteration
must agree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import input as data_input
from flaxgan.train import checkpoint, sharding
from tests.conftest import REPO_ROOT, TEST_DATA, xla_flags
from tests.flaxgan.train import multiprocess_train

# The three training processes, compiling on a busy CI machine, must end within this.
TIMEOUT_S = 300

# How far the two-process parameters may be from the one-process ones. The cross-device means
# of gradients and buffers add the 8 per-device values in another order across two processes
# (gloo) than within one, so they differ in the last float32 bits. Adam's step (lr 2.5e-3)
# normalises each gradient by its own magnitude, which keeps those differences at rounding
# size (measured: < 1e-6) for almost every parameter, but not for the rare one whose per-device
# gradients cancel to about Adam's epsilon (1e-8): its step may differ by a fraction of the
# learning rate (measured: one of 30k elements, by 1e-5 to 1.4e-5 in variants of this run).
# Hence: at most OUTLIERS of all elements beyond ROUNDING, none beyond 2 Adam steps per
# iteration. A broken equivalence moves far more (each process reading its own shard, as the
# loop did before: 31% of the elements after one iteration; one more iteration: over 90%,
# which `_assert_same_networks` checks every time).
ROUNDING = 1e-5  # absolute, plus as much relative
OUTLIERS = 1e-3


def _free_port() -> int:
    """A port nothing listens on now (a race with other programs is possible, not likely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir: Path, iterations: list[int], log: Path, devices: int,
           process: tuple[int, int, str] | None = None) -> subprocess.Popen:
    """One `multiprocess_train` process in its own session (so a kill reaches all it started).

    Args:
      workdir: the run.
      iterations: total iterations of each `loop.train` call, in turn (later calls resume).
      log: file for its stdout and stderr.
      devices: CPU devices of the process.
      process: `(index, count, coordinator address)` for a multi-process run, else None.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    # The suite's compile flags (Makefile's fast-compiling ones): compiling dominates these
    # runs and the persistent cache cannot help the second process (JAX keys CPU executables by
    # each process's own devices and only process 0 writes).
    env.update(PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))
    if process is not None:
        index, count, address = process
        env.update(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(count),
                   JAX_PROCESS_ID=str(index))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.flaxgan.train.multiprocess_train", str(workdir),
             *map(str, iterations)], cwd=REPO_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)


def _tail(log: Path, chars: int = 3000) -> str:
    """The end of a process's log, without gloo's connection lines."""
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if "[Gloo]" not in line)[-chars:]


def _kill(processes: dict[Path, subprocess.Popen]) -> None:
    for p in processes.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _wait(processes: dict[Path, subprocess.Popen], timeout_s: float) -> None:
    """Waits until all `processes` (keyed by their logs) have exited; when one fails or time
    runs out, kills the others (a process whose peer died would wait for it) and fails the test
    with the log of the first failed one (or of the first still running)."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            failed = [log for log, p in processes.items() if p.poll() not in (None, 0)]
            if failed:
                pytest.fail(f"{failed[0].name} exited with status "
                            f"{processes[failed[0]].returncode}:\n{_tail(failed[0])}")
            running = [log for log, p in processes.items() if p.poll() is None]
            if not running:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{[log.name for log in running]} still running after "
                            f"{timeout_s} s:\n{_tail(running[0])}")
            time.sleep(0.2)
    finally:
        _kill(processes)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Workdirs of the three processes, started together: `reference` (1 process x 8 devices,
    2 iterations) and `pair` (2 processes x 4 devices: 1 iteration, then resumed for 1 more)."""
    root = tmp_path_factory.mktemp("multiprocess")
    address = f"127.0.0.1:{_free_port()}"
    processes: dict[Path, subprocess.Popen] = {}
    try:
        processes[root / "reference.log"] = _start(root / "reference", [2],
                                                   root / "reference.log", 8)
        for index in range(2):
            log = root / f"pair{index}.log"
            processes[log] = _start(root / "pair", [1, 2], log, 4, (index, 2, address))
        _wait(processes, TIMEOUT_S)
    finally:  # also after an error starting one (the others must not outlive the test)
        _kill(processes)
    return {"reference": root / "reference", "pair": root / "pair"}


def _networks(workdir: Path, nimg: int) -> dict[str, np.ndarray]:
    """Every array of the G, D and G_ema export written after `nimg` images."""
    from flaxgan.train import loop  # noqa: PLC0415 (the pytest process needs no loop otherwise)
    snapshot = workdir / "snapshots" / loop.snapshot_name(nimg)
    out = {}
    for key in ("G", "D", "G_ema"):
        with np.load(snapshot / f"{key}.npz") as f:
            out.update({f"{key}/{name}": f[name] for name in f.files})
    return out


def _records(workdir: Path) -> list[dict]:
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def _assert_same_networks(got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                          other: dict[str, np.ndarray], iterations: int) -> None:
    """`got` == `want` (exports after `iterations`) up to the cross-device rounding explained at
    `ROUNDING`; `other`, an export one iteration apart from `want`, is not."""
    assert got.keys() == want.keys() == other.keys()
    floats = [k for k, v in want.items() if v.dtype.kind == "f"]
    for name in want.keys() - set(floats):  # names of the buffers
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    def beyond_rounding(a: dict[str, np.ndarray]) -> tuple[int, float]:
        far = {k: np.abs(a[k] - want[k]) > ROUNDING * (1 + np.abs(want[k])) for k in floats}
        return sum(int(f.sum()) for f in far.values()), max(
            (float(np.max(np.abs(a[k] - want[k]))) for k in floats), default=0.0)

    elements = sum(want[k].size for k in floats)
    train = multiprocess_train.config(1).train
    lr = max(train.g_lr, train.d_lr)
    outliers, worst = beyond_rounding(got)
    assert all(np.isfinite(got[k]).all() for k in floats)
    assert outliers <= OUTLIERS * elements, (
        f"{outliers} of {elements} elements differ by more than {ROUNDING:g} (+ relative)")
    assert worst <= 2 * lr * iterations, f"an element differs by {worst:g}"
    moved, _ = beyond_rounding(other)
    assert moved > 0.5 * elements  # one iteration apart fails the test by far


def _assert_same_losses(got: dict, want: dict) -> None:
    losses = [k for k in want if k.startswith("Loss/")]
    assert losses and set(losses) <= set(got)
    for key in losses:
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key


def test_two_processes_train_like_one_process_with_eight_devices(runs):
    batch = multiprocess_train.BATCH
    reference, pair = runs["reference"], runs["pair"]
    _assert_same_networks(_networks(pair, batch), _networks(reference, batch),
                          _networks(reference, 2 * batch), iterations=1)
    _assert_same_losses(_records(pair)[0], _records(reference)[0])


def test_both_processes_save_one_checkpoint_and_resume_it(runs):
    batch = multiprocess_train.BATCH
    reference, pair = runs["reference"], runs["pair"]
    # One Orbax checkpoint per tick, written by both processes (each its own array files).
    assert checkpoint.Checkpointer(str(pair)).latest_step() == 2
    for step in (1, 2):
        state = pair / "checkpoints" / str(step) / "state"
        assert {p.name for p in state.glob("ocdbt.process_*")} == {"ocdbt.process_0",
                                                                   "ocdbt.process_1"}
    # The second `train` continued from step 1 (tick 1 is logged once, by the first) and ended
    # where the uninterrupted single process did: parameters, optimizer moments, EMA, RNG and
    # data position all came back.
    records = _records(pair)
    assert [r["tick"] for r in records] == [1, 2]
    _assert_same_losses(records[1], _records(reference)[1])
    _assert_same_networks(_networks(pair, 2 * batch), _networks(reference, 2 * batch),
                          _networks(reference, batch), iterations=2)


def test_processes_feed_their_slices_of_the_one_process_batches():
    """`split_batches`: 2 processes x 2 examples concatenate to the batches of 1 process x 4."""
    kwargs = dict(split="train[:24]", resolution=8, seed=3, xflip=True, prefetch=0)
    folder = str(TEST_DATA / "celeba_small")
    whole = data_input.make_dataset(folder, batch_size=4, process_index=0, process_count=1,
                                    split_batches=True, **kwargs)
    parts = [data_input.make_dataset(folder, batch_size=2, process_index=p, process_count=2,
                                     split_batches=True, **kwargs) for p in range(2)]
    for _ in range(8):  # two epochs: the reshuffle is shared too
        want = next(whole)["image"]
        got = np.concatenate([next(part)["image"] for part in parts])
        np.testing.assert_array_equal(got, want)
    # The position of each slice is the position of the global batches.
    assert parts[0].get_state() == parts[1].get_state() == whole.get_state()


@pytest.mark.parametrize("env, message", [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2"},
     "JAX_PROCESS_ID not set"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "2"}, "expected 0 <= id < JAX_NUM_PROCESSES=2"),
    ({"JAX_COORDINATOR_ADDRESS": "no-port", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     "expected host:port"),
])
def test_incomplete_environment_is_one_line(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(sharding.DistributedSetupError, match=message) as raised:
        sharding.initialize_distributed(timeout_s=1)
    assert "\n" not in str(raised.value)


def test_unreachable_coordinator_is_one_line_after_the_timeout(monkeypatch):
    """Raised before JAX's client is started (it would abort the process instead)."""
    address = f"127.0.0.1:{_free_port()}"
    for key, value in {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2",
                       "JAX_PROCESS_ID": "1"}.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(sharding.DistributedSetupError, match="no coordinator within 1 s") as e:
        sharding.initialize_distributed(timeout_s=1)
    assert "\n" not in str(e.value) and address in str(e.value)
    assert time.monotonic() - start < 10
