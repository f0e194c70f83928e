"""The CPU device layout of training and evaluation: how many XLA host devices a CPU splits into.

XLA runs one program per device, and on a CPU one program keeps the cores only partly busy;
splitting the host into several devices runs the per-device slices of a data-parallel batch
side by side. Which split is fastest depends on the workload (`benchmarks/RESULTS.md`, "The CPU
device layout", 2 cores): training at 32 and 128 channels ran 1.7× and 1.2× faster on one host
device per core than on one device with YNNPACK's convolutions, and 4 devices per core were no
faster than one at 128 channels; with XLA's own convolution kernels (`flaxgan.xla_cpu`) the two
layouts trade places from run to run at 32-128 channels and one per core was 6 % faster at
256² (2026-12-04, "Transposed convolutions"), so training keeps it; FID Inception features
1.5× faster on one device per core (4 per core: 1.6×); sampling the bundled 32² model was
fastest on a single device (JAX's default), and so was the projector (against two) — so
training and metrics choose here, sampling keeps JAX's default.

`configure(workload, batch_size)` applies that choice — one host device per core, lowered to a
divisor of a training run's global batch — unless the user chose (`XLA_FLAGS` with
`--xla_force_host_platform_device_count`, `JAX_NUM_CPU_DEVICES`, or `devices=`), and returns
the line to log. It must run before anything asks JAX for its devices (the count is read when
the CPU backend starts); later it changes nothing and says so. Accelerators are unaffected: the
count applies to the CPU backend only.
"""

from __future__ import annotations

import os
import re

import jax

from flaxgan.errors import InvalidArgument

__all__ = ["WORKLOADS", "configure", "cpu_cores", "user_device_count"]

WORKLOADS = ("training", "metrics")  # one host device per core measured fastest for both

_XLA_FLAG = re.compile(r"--xla_force_host_platform_device_count[= ](\d+)")


def user_device_count() -> tuple[int, str] | None:
    """`(count, where)` when the environment already sets the host device count, else None."""
    match = _XLA_FLAG.search(os.environ.get("XLA_FLAGS", ""))
    if match:
        return int(match.group(1)), "XLA_FLAGS"
    value = os.environ.get("JAX_NUM_CPU_DEVICES", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value), "JAX_NUM_CPU_DEVICES"
    return None


def _backends_started() -> bool:
    """Whether JAX has created its backends (after which the host device count is fixed and a
    new `jax_num_cpu_devices` is silently ignored). JAX has no public query for it; without
    the private one, assume not (the layout line could then overstate what took effect)."""
    from jax._src import xla_bridge  # noqa: PLC0415
    return bool(getattr(xla_bridge, "backends_are_initialized", lambda: False)())


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure(workload: str, batch_size: int | None = None, devices: int | None = None
              ) -> str:
    """Sets this process's number of CPU host devices for `workload`; returns the line to log.

    Args:
      workload: 'training' or 'metrics' (`WORKLOADS`).
      batch_size: the global batch; the count is lowered to its largest divisor that is at most
        the core count (each device takes an equal slice). None: no constraint (StyleGAN v1
        rounds each stage's minibatch to the device count).
      devices: an explicit count (the entry point's `--cpu_devices`); wins over the choice.

    Raises:
      ValueError: an unknown workload, or `devices` or `batch_size` < 1.
      InvalidArgument: `devices` differs from the count the environment already sets.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    for name, value in (("devices", devices), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    user = user_device_count()
    if devices is not None and user is not None and devices != user[0]:
        raise InvalidArgument(f"--cpu_devices={devices} contradicts {user[1]}, which sets "
                              f"{user[0]} host devices; give one of them")
    if devices is None and user is not None:
        return (f"CPU layout: {user[0]} host device{'s' if user[0] > 1 else ''}, as set by "
                f"{user[1]}")
    if devices is not None:
        count, why = devices, "as requested by --cpu_devices"
    else:
        cores = cpu_cores()
        count = cores if batch_size is None else max(
            d for d in range(1, min(cores, batch_size) + 1) if batch_size % d == 0)
        why = f"one per core on {cores} cores, the fastest measured {workload} layout"
        if count != cores:
            why += f", lowered to divide the batch of {batch_size}"
    if _backends_started():
        return (f"CPU layout: left at {len(jax.devices('cpu'))} host devices (JAX had "
                f"started before the layout was chosen)")
    jax.config.update("jax_num_cpu_devices", count)
    return (f"CPU layout: {count} host device{'s' if count > 1 else ''} ({why}; --cpu_devices "
            f"or XLA_FLAGS=--xla_force_host_platform_device_count=N to choose)")
