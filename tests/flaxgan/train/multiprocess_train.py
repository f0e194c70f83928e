"""The training processes of `test_multiprocess`.

    python -m tests.flaxgan.train.multiprocess_train WORKDIR ITERATIONS [ITERATIONS ...]

Trains `config(ITERATIONS)` in WORKDIR with `flaxgan.train.loop.train`, once per count given:
each later call resumes from the checkpoint the one before wrote, as a restart would (a new
checkpointer, data iterator and state, all read back from WORKDIR; only the compiled steps are
reused, which keeps the test cheap). The process layout comes from the environment as for any
training run: `XLA_FLAGS` (host devices), and for several processes `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`.
"""

from __future__ import annotations

import sys

import ml_collections

from tests.flaxgan.train import tiny_run

BATCH = tiny_run.BATCH  # global batch: one example per device of the 8-device layouts


def config(iterations: int) -> ml_collections.ConfigDict:
    """`tiny_run.config` (8², 16 channels) training `iterations` steps of `BATCH` images, with a
    tick, an Orbax checkpoint and an export after every iteration. Phases: G main, D main and,
    every 2 steps from step 0, D regularisation (R1); no path-length regularisation, whose
    phase would cost about a third of each process's compile time, and no ADA (not
    multi-process specific)."""
    config = tiny_run.config(total_kimg=BATCH * iterations / 1000)
    config.train.pl_weight = 0.0
    config.train.g_reg_interval = None
    config.augment.pipe = ""
    config.log.kimg_per_tick = BATCH / 1000
    return config


def main(argv: list[str]) -> None:
    workdir, counts = argv[1], [int(a) for a in argv[2:]]
    from flaxgan.train import loop  # noqa: PLC0415 (after the environment is read)
    for iterations in counts:
        loop.train(config(iterations), workdir)


if __name__ == "__main__":
    main(sys.argv)
