"""Train a StyleGAN2-ADA / StyleGAN3 generator on every local accelerator.

    python -m experiments.train --config=celeba256.py --workdir=runs/celeba256
    python -m experiments.train --config=smoke.py --workdir=runs/smoke --config.train.total_kimg=4

`--config` takes a file in experiments/configs/ by its bare name, or any path, optionally with
a variant (`celeba256.py:short`); `--config.<section>.<key>=value` overrides single values.
Re-running with the same `--workdir` resumes from its latest checkpoint. See
`flaxgan.train.loop` for what is written where.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, samples).")
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


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from flaxgan.train import checkpoint, loop  # noqa: PLC0415 (after flag parsing)

    try:
        record = loop.train(_CONFIG.value, _WORKDIR.value)
    except (loop.DatasetNotPrepared, loop.TrainingDiverged, checkpoint.CheckpointError) as e:
        sys.exit(f"error: {e}")
    logging.info("done: %s", record)


if __name__ == "__main__":
    app.run(main, argv=resolve_config_arg(sys.argv))
