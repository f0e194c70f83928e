"""The tiny StyleGAN2 run that the loop's end-to-end tests train, resume and damage.

`test_loop`, `test_checkpoint_recovery` and `test_step` run on one xdist worker
(`tests/conftest.py`); the first two share the session fixture `tiny_run`
(tests/flaxgan/train/conftest.py): its four iterations are trained once per test run, and every
later `loop.train` of this config (and `test_step`, through `networks_and_steps`) reuses the
compiled phases in memory (the loop caches them per networks, hyperparameters and mesh).
"""

from __future__ import annotations

import json
import os

import ml_collections

from experiments.configs import common
from tests.conftest import TEST_DATA

BATCH = 8
RESOLUTION = 8  # blocks b4, b8


def config(total_kimg: float, channel_max: int = 16) -> ml_collections.ConfigDict:
    """8² (blocks b4, b8), 16 channels, every phase (path length and R1 every 2nd iteration),
    ADA ('bgc', p adjusted every 2nd iteration by 0.016), no EMA ramp-up, a tick, a checkpoint
    and a grid every 2 iterations. `test_step`'s bookkeeping tests run these phases too."""
    cfg = common.stylegan2_config(
        batch_size=BATCH, gamma=1.0, ema_kimg=0.1, ema_rampup=None, mbstd=1,
        fmaps=channel_max * 16 / 32768, mapping_layers=2, total_kimg=total_kimg, z_dim=16,
        w_dim=16, channel_max=channel_max)
    cfg.data.name = str(TEST_DATA / "celeba_small")
    cfg.data.resolution = RESOLUTION
    cfg.data.xflip = True
    cfg.train.g_reg_interval = 2
    cfg.train.d_reg_interval = 2
    cfg.augment.update(pipe="bgc", ada_interval=2, ada_kimg=1.0)
    cfg.log.kimg_per_tick = BATCH * 2 / 1000  # a tick every 2 iterations
    cfg.log.snapshot_every_ticks = 1
    cfg.log.image_every_ticks = 1
    cfg.log.metrics = ()
    cfg.log.grid_size = (4, 2)
    cfg.log.progress = False
    return cfg


def networks_and_steps(mesh):
    """`(G, D, hp, steps)`: the networks, hyperparameters and jitted phases `loop.train` builds
    for `config` on `mesh` (the same cached objects, so nothing is compiled twice)."""
    from flaxgan.train import loop  # noqa: PLC0415 (collection needs no JAX programs)

    cfg = config(total_kimg=0)
    _, _, G, D = loop.build_networks(cfg.model, RESOLUTION, 3, 0)
    hp = loop.hyperparameters(cfg.train, cfg.augment)
    return G, D, hp, loop._train_steps(G, D, hp, mesh, loop._make_augment(cfg.augment))


def records(workdir: str) -> list[dict]:
    """The run's `metrics.jsonl`, one dict per tick."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]
