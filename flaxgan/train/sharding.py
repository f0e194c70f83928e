"""Device mesh and data placement for data-parallel training.

One 1-D mesh over every device of every process, axis `batch`: parameters are replicated and
each device takes an equal slice of the global batch (the official code's one-GPU-per-process
DDP layout). On several hosts, call `initialize_distributed()` first; each process then feeds
its own slice of the batch (`process_batch_size`) and `global_batch` assembles the global array.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "BATCH_AXIS",
    "initialize_distributed",
    "make_mesh",
    "replicated",
    "batch_sharded",
    "process_batch_size",
    "global_batch",
    "replicate",
]

BATCH_AXIS = "batch"


def initialize_distributed() -> None:
    """Starts `jax.distributed` when the environment describes several processes.

    Cluster environments (SLURM, Cloud TPU, `JAX_COORDINATOR_ADDRESS`) are detected by JAX itself;
    a single process with nothing configured is left alone.
    """
    configured = any(k in os.environ for k in (
        "JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES",
        "MEGASCALE_COORDINATOR_ADDRESS"))
    if configured and not jax.distributed.is_initialized():
        jax.distributed.initialize()


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
