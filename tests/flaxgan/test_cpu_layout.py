"""The CPU layout: one host device per core, dividing a training batch; the user wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from flaxgan import cpu_layout
from flaxgan.errors import InvalidArgument
from tests.conftest import REPO_ROOT


def test_user_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=6")
    assert cpu_layout.user_device_count() == (6, "XLA_FLAGS")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert cpu_layout.user_device_count() is None
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "3")
    assert cpu_layout.user_device_count() == (3, "JAX_NUM_CPU_DEVICES")
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "-1")  # JAX's "unset"
    assert cpu_layout.user_device_count() is None


def test_the_user_wins_and_a_started_backend_is_left_alone(monkeypatch):
    # The suite runs with XLA_FLAGS=--xla_force_host_platform_device_count=8.
    line = cpu_layout.configure("training", batch_size=6)
    assert line.startswith("CPU layout: 8 host devices, as set by XLA_FLAGS"), line
    with pytest.raises(InvalidArgument, match="--cpu_devices=3 contradicts XLA_FLAGS"):
        cpu_layout.configure("training", devices=3)
    assert jax.device_count() == 8  # starts the backend (if no test did before)
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    line = cpu_layout.configure("training", batch_size=6)
    assert line.startswith("CPU layout: left at 8 host devices"), line
    assert jax.device_count() == 8
    with pytest.raises(ValueError, match="devices must be >= 1"):
        cpu_layout.configure("metrics", devices=0)
    with pytest.raises(ValueError, match="workload must be one of"):
        cpu_layout.configure("sampling")


_CHILD = """
import json, sys
from flaxgan import cpu_layout
from flaxgan.errors import InvalidArgument
import jax
batch, devices = json.loads(sys.argv[1])
line = cpu_layout.configure("training", batch, devices)
print(json.dumps([line, jax.device_count(), cpu_layout.cpu_cores()]))
"""


@pytest.mark.parametrize("batch, devices", [(None, None), (6, None), (7, None), (4, 3)])
def test_a_fresh_process_gets_one_device_per_core_dividing_the_batch(batch, devices):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([batch, devices])],
                         env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line, count, cores = json.loads(out.stdout.strip().splitlines()[-1])
    if devices is not None:
        want = devices
    elif batch is None:
        want = cores
    else:
        want = max(d for d in range(1, min(cores, batch) + 1) if batch % d == 0)
    assert count == want, line
    assert line.startswith(f"CPU layout: {want} host device"), line
    if devices is None and want != cores:
        assert f"lowered to divide the batch of {batch}" in line
