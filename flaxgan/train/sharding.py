"""Device mesh and data placement for data-parallel training.

One 1-D mesh over every device of every process, axis `batch`: parameters are replicated and
each device takes an equal slice of the global batch (the official code's one-GPU-per-process
DDP layout). On several hosts, call `initialize_distributed()` first; each process then feeds
its own slice of the batch (`process_batch_size` examples, the `process_batch_index`-th slice
of the global batch) and `global_batch` assembles the global array.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flaxgan.errors import UserError

__all__ = [
    "BATCH_AXIS",
    "DistributedSetupError",
    "initialize_distributed",
    "make_mesh",
    "replicated",
    "batch_sharded",
    "process_batch_size",
    "process_batch_index",
    "global_batch",
    "replicate",
]

BATCH_AXIS = "batch"


class DistributedSetupError(UserError, RuntimeError):
    """The multi-process environment is incomplete or the coordinator cannot be reached."""


# Environments JAX recognises by itself (it reads the process count and index from them).
_CLUSTER_VARIABLES = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedSetupError(f"{name}={value!r}: expected an integer") from None


def initialize_distributed(timeout_s: float = 300) -> None:
    """Starts `jax.distributed` when the environment describes several processes.

    Every process of a run sets `JAX_COORDINATOR_ADDRESS=host:port` (process 0's host, reachable
    from all; process 0 listens on that port), `JAX_NUM_PROCESSES` and its own `JAX_PROCESS_ID`
    (0 .. N-1): JAX reads only the address, flaxgan passes the other two. On SLURM and Cloud
    TPU, JAX finds all three itself. A single process with none of them is left alone; a second
    call does nothing. Cross-process collectives on CPU use gloo (JAX's default).

    Args:
      timeout_s: how long a process waits for the coordinator to accept connections, and then
        for all processes to join it.

    Raises:
      DistributedSetupError: one line for a missing or malformed variable, or a coordinator
        that does not accept connections within `timeout_s`. (Processes that reach it but never
        all join, e.g. a wrong `JAX_NUM_PROCESSES`, are ended by JAX itself after `timeout_s`.)
    """
    if jax.distributed.is_initialized():
        return
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    count, index = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
    cluster = any(k in os.environ for k in _CLUSTER_VARIABLES)
    if not (address or count is not None or index is not None or cluster):
        return
    names = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    missing = [n for n, v in zip(names, (address, count, index), strict=True) if v is None]
    if missing and not cluster:
        raise DistributedSetupError(f"a run of several processes sets {', '.join(names)} on "
                                    f"every process; {', '.join(missing)} not set")
    if count is not None and index is not None and not 0 <= index < count:
        raise DistributedSetupError(f"JAX_PROCESS_ID={index}: expected 0 <= id < "
                                    f"JAX_NUM_PROCESSES={count}")
    if address and index:  # process 0 starts the coordinator; the others must reach it
        _wait_for_coordinator(address, timeout_s)
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count,
                                   process_id=index,
                                   initialization_timeout=max(1, round(timeout_s)))
    except (ValueError, TypeError, RuntimeError) as e:  # multi-line texts from jax / jaxlib
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DistributedSetupError(f"jax.distributed.initialize: {first[:200]}") from None


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Returns once `host:port` accepts a TCP connection (the coordinator may start after this
    process); else raises `DistributedSetupError`. JAX's own client would abort the process
    with a stack dump instead of raising."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not host or not port.isdigit():
        raise DistributedSetupError(f"JAX_COORDINATOR_ADDRESS={address!r}: expected host:port")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return
        except socket.gaierror as e:
            raise DistributedSetupError(f"JAX_COORDINATOR_ADDRESS={address}: unknown host "
                                        f"({e.strerror})") from None
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedSetupError(
                    f"JAX_COORDINATOR_ADDRESS={address}: no coordinator within {timeout_s:g} s "
                    f"({e.strerror or e}); start process 0 (JAX_PROCESS_ID=0) on that host "
                    "with the same address, reachable from this one") from None
        time.sleep(0.2)


def make_mesh(devices: Sequence[jax.Device] | None = None, *, local: bool = False) -> Mesh:
    """The one mesh flaxgan shards over: 1-D, axis `BATCH_AXIS` (`'batch'`).

    Args:
      devices: the devices, in order; default all devices of all processes (training), or
        this process's devices with `local=True` (evaluation, sampling, projection: work each
        process feeds from host arrays on its own).
      local: default to `jax.local_devices()` instead of `jax.devices()`.
    """
    if devices is None:
        devices = jax.local_devices() if local else jax.devices()
    return Mesh(np.asarray(list(devices)), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh."""
    return NamedSharding(mesh, P(BATCH_AXIS))


def process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Examples this process feeds per step; the global batch must split evenly over devices."""
    if global_batch_size % mesh.size:
        raise ValueError(f"batch size {global_batch_size} is not divisible by the "
                         f"{mesh.size} devices of the mesh")
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    return global_batch_size // mesh.size * local


def process_batch_index(mesh: Mesh) -> int:
    """Which of the `jax.process_count()` equal, consecutive slices of a global batch this
    process feeds: the one its devices hold in the mesh (`global_batch` places the process's
    rows there).

    Raises:
      ValueError: this process's devices are not one consecutive run of the mesh, or processes
        hold different numbers of devices (no process then feeds one whole slice).
    """
    flat = list(mesh.devices.flat)
    mine = [i for i, d in enumerate(flat) if d.process_index == jax.process_index()]
    share, rest = divmod(len(flat), jax.process_count())
    start = mine[0] if mine else 0
    if rest or not mine or mine != list(range(start, start + share)) or start % share:
        raise ValueError(f"process {jax.process_index()} holds mesh positions {mine} of "
                         f"{len(flat)}: expected one consecutive run of {share}")
    return start // share


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of every array -> global arrays sharded over `batch`."""
    sharding = batch_sharded(mesh)
    if jax.process_count() == 1:
        return {k: jax.device_put(np.asarray(v), sharding) for k, v in local_batch.items()}
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of `tree` on all devices of the mesh."""
    return jax.device_put(tree, replicated(mesh))
