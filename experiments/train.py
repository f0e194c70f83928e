"""Train a StyleGAN2-ADA / StyleGAN3 generator on every local accelerator.

    python -m experiments.train --config=celeba256.py --workdir=runs/celeba256
    python -m experiments.train --config=smoke.py --workdir=runs/smoke --config.train.total_kimg=4

`--config` takes a file in experiments/configs/ by its bare name, or any path, optionally with
a variant (`celeba256.py:short`); `--config.<section>.<key>=value` overrides single values (a
key the config lacks is one line naming the closest one). Re-running with the same `--workdir`
resumes from its latest checkpoint. See `flaxgan.train.loop` for what is written where.

On a CPU the run splits the host into one XLA device per core (the fastest measured training
layout, `flaxgan.cpu_layout`; the log says what was chosen); `--cpu_devices=N` or
`XLA_FLAGS=--xla_force_host_platform_device_count=N` choose another.

Bad input is one line `error: ...` (exit status 2) before anything is built: an unknown config
key, a batch size the devices cannot split, an unwritable workdir, or a TFDS dataset not
prepared in its data dir (the line gives the `prepare` command of the config and
`--config.data.data_dir=DIR`).
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Sequence

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli
from flaxgan import cpu_layout, xla_cpu
from flaxgan.errors import InvalidArgument

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, samples).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "XLA host devices to split the CPU into (default: one per core, "
    "lowered to divide the batch; XLA_FLAGS=--xla_force_host_platform_device_count also "
    "sets it).", lower_bound=1)
flags.mark_flags_as_required(["config", "workdir"])


def resolve_config_arg(argv: Sequence[str]) -> list[str]:
    """Rewrites `--config=NAME[:variant]` to experiments/configs/NAME when NAME is not a path
    that exists (so `--config=celeba256.py` works from anywhere)."""
    out = []
    for arg in argv:
        if arg.startswith("--config=") and not arg.startswith("--config=="):
            value = arg[len("--config="):]
            path, sep, variant = value.partition(":")
            if not os.path.exists(path) and (CONFIG_DIR / path).exists():
                arg = f"--config={CONFIG_DIR / path}{sep}{variant}"
        out.append(arg)
    return out


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`app.run`'s flags parser: bare config names resolved, flag errors in one line."""
    return cli.parse_flags(resolve_config_arg(argv))


def _known_keys() -> dict[str, set[str]]:
    """Section -> the keys a config may set (those of the shared presets)."""
    from experiments.configs import common  # noqa: PLC0415 (imports the train step)

    base = common.stylegan2_config(batch_size=8, gamma=1.0, ema_kimg=1.0, ema_rampup=None,
                                   mbstd=4, fmaps=0.5, mapping_layers=2, total_kimg=1.0)
    known = {"": set()}
    for preset in (base, common.stylegan1_config()):  # StyleGAN v1 adds `schedule`
        known[""] |= set(preset)
        for name, section in preset.items():
            if isinstance(section, ml_collections.ConfigDict):
                known.setdefault(name, set()).update(section)
    return known


def check_config(config: ml_collections.ConfigDict) -> int | None:
    """Refuses unknown sections or keys and a batch size that is not a positive integer.

    Returns:
      The batch the devices must split (None for StyleGAN v1: its stages round their
      minibatches to the device count).
    Raises:
      InvalidArgument: one line naming the key and what is expected.
    """
    known = _known_keys()
    for key in config:
        if key not in known[""]:
            raise InvalidArgument(f"config: unknown section or key {key!r}; expected one of "
                                  f"{sorted(known[''])}")
        extra = sorted(set(config[key]) - known[key]) if key in known and key != "model" else []
        if extra:
            raise InvalidArgument(f"config.{key}: unknown keys {extra}; expected some of "
                                  f"{sorted(known[key])}")
    batch = config.train.batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidArgument(f"config.train.batch_size={batch!r}: expected a positive integer")
    return None if config.get("schedule") else batch


def check_batch_split(batch: int | None, num_devices: int) -> None:
    """Refuses a batch (from `check_config`) the devices cannot split."""
    if batch is not None and batch % num_devices:
        fit = num_devices * -(-batch // num_devices)
        raise InvalidArgument(f"config.train.batch_size={batch}: must be a multiple of the "
                              f"{num_devices} devices (e.g. {fit})")


def check_workdir(workdir: str) -> None:
    """Creates `workdir` when missing; one line when it cannot be created or written."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"--workdir={workdir}: cannot create it ({e.strerror})") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise InvalidArgument(f"--workdir={workdir}: not writable")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}")
    cli.quiet_dependency_logs()
    from flaxgan.train import checkpoint, loop, sharding  # noqa: PLC0415 (after flag parsing)

    @cli.reports_user_errors(loop.DatasetNotPrepared, loop.TrainingDiverged,
                             checkpoint.CheckpointError)
    def run(_):
        batch = check_config(_CONFIG.value)
        # Both before anything asks JAX for its devices: the CPU layout (dividing the batch),
        # then (several processes) joining the run.
        logging.info(cpu_layout.configure("training", batch, _CPU_DEVICES.value))
        logging.info(xla_cpu.describe())
        sharding.initialize_distributed()
        check_batch_split(batch, jax.device_count())
        cli.check_dataset(_CONFIG.value.data, data_dir_flag="--config.data.data_dir")
        check_workdir(_WORKDIR.value)
        logging.info("done: %s", loop.train(_CONFIG.value, _WORKDIR.value))

    run(argv)


if __name__ == "__main__":
    app.run(main, argv=sys.argv, flags_parser=parse_flags)
