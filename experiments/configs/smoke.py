"""Smoke run: a tiny StyleGAN2-ADA at 32² on the 512 bundled CelebA faces, a few kimg on CPU.

    python -m experiments.train --config=smoke.py --workdir=runs/smoke

Expect: about 2 kimg in a few minutes on 2 CPU cores (most of it compiling the four phases),
`runs/smoke/metrics.jsonl` with one line per 0.5-kimg tick (losses near log 2 ≈ 0.69 per term,
ADA p starting to move), `samples/reals.png`, `samples/fakes*.png` (blurry face-coloured blobs
this early), an Orbax checkpoint and an official-format export under `snapshots/`. Rerunning
the same command resumes (and stops at once when `total_kimg` is reached).

`smoke.py:stylegan1`: a tiny StyleGAN (v1) at 16² growing progressively from 4² (0.25 kimg
stable + 0.25 kimg fade-in per resolution, minibatch 32 at 4², 16 above: two compilations),
1.25 kimg in all; `metrics.jsonl` logs `Progress/lod` going 2 → 1 → 0.
"""

from experiments.configs import common


def get_config(arg=None):
    if arg == "stylegan1":
        return stylegan1()
    if arg:
        raise ValueError(f"unknown variant {arg!r} (known: stylegan1)")
    config = common.stylegan2_config(
        batch_size=16, gamma=1.0, ema_kimg=0.5, ema_rampup=0.05, mbstd=4, fmaps=1024 / 32768,
        mapping_layers=2, total_kimg=2.0, z_dim=64, w_dim=64, channel_max=32)
    config.data.name = str(common.REPO_ROOT / "tests" / "data" / "celeba_small")
    config.data.resolution = 32
    config.data.xflip = True
    config.train.g_reg_interval = 4
    config.log.kimg_per_tick = 0.5
    config.log.image_every_ticks = 1
    config.log.snapshot_every_ticks = 2
    config.log.metrics = ()
    config.log.keep_checkpoints = 2
    return config


def stylegan1():
    """StyleGAN (v1) at 16², progressive from 4², sized for a CPU smoke run."""
    schedule = common.official_schedule(
        lod_initial_resolution=4, lod_training_kimg=0.25, lod_transition_kimg=0.25,
        minibatch_base=16, minibatch_dict={"4": 32}, tick_kimg_base=0.25, tick_kimg_dict={})
    config = common.stylegan1_config(
        total_kimg=1.25, schedule=schedule, fmap_base=64, fmap_max=32, latent_size=32,
        mapping_layers=2, mapping_fmaps=32)
    config.data.name = str(common.REPO_ROOT / "tests" / "data" / "celeba_small")
    config.data.resolution = 16
    config.data.xflip = True
    config.log.image_every_ticks = 1
    config.log.snapshot_every_ticks = 2
    config.log.metrics = ()
    config.log.keep_checkpoints = 2
    return config
