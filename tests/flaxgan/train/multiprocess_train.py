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

from experiments.configs import common
from tests.conftest import TEST_DATA

BATCH = 8  # global batch: one example per device of the 8-device layouts


def config(iterations: int) -> ml_collections.ConfigDict:
    """A tiny StyleGAN2 at 8² (16 channels) training `iterations` steps of `BATCH` images,
    with a tick, an Orbax checkpoint and an export after every iteration. Phases: G main, D
    main and, every 2 steps from step 0, D regularisation (R1); no path-length regularisation,
    whose phase would cost about a third of each process's compile time."""
    config = common.stylegan2_config(
        batch_size=BATCH, gamma=1.0, ema_kimg=0.1, ema_rampup=0.05, mbstd=1,
        fmaps=16 * 16 / 32768, mapping_layers=2, total_kimg=BATCH * iterations / 1000,
        z_dim=16, w_dim=16, channel_max=16)
    config.data.name = str(TEST_DATA / "celeba_small")
    config.data.resolution = 8
    config.data.xflip = True
    config.train.pl_weight = 0.0
    config.train.g_reg_interval = None
    config.train.d_reg_interval = 2
    config.augment.pipe = ""  # ADA is not multi-process specific; keeps compile time down
    config.log.kimg_per_tick = BATCH / 1000
    config.log.snapshot_every_ticks = 1
    config.log.image_every_ticks = 1
    config.log.metrics = ()
    config.log.grid_size = (4, 2)
    config.log.progress = False
    return config


def main(argv: list[str]) -> None:
    workdir, counts = argv[1], [int(a) for a in argv[2:]]
    from flaxgan.train import loop  # noqa: PLC0415 (after the environment is read)
    for iterations in counts:
        loop.train(config(iterations), workdir)


if __name__ == "__main__":
    main(sys.argv)
