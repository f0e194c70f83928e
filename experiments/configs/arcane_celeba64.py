"""StyleGAN3-T on a small mix of stylised (Arcane-style) portraits and CelebA faces at 64².

Prepare the mixed set once: DIR holds one sub-folder per source (e.g. `arcane/`, `celeba/`, or
a `sources.json` choosing folders and weights); faces are found and cropped with OpenCV's Haar
cascade:

    python -m data_pipelines.build image_mix --manual_dir=DIR --config=haar_64

then train config T with batch 32, R1 γ = 0.025, ADA, x-flips:

    python -m experiments.train --config=arcane_celeba64.py --workdir=runs/arcane64

Snapshots and ψ = 0.65 sample grids every 10 ticks (`python -m experiments.generate
--network=runs/arcane64/snapshots/network-snapshot-XXXXXX --trunc=0.65 --grid`); a short run of a
few hundred kimg already gives recognisable faces on a GPU. Variants: `:gray` (the
`haar_64_gray` build), `:r` (config R).
"""

from experiments.configs import common


def get_config(arg=None):
    variant = arg or "t"
    if variant not in ("t", "r", "gray"):
        raise ValueError(f"unknown variant {arg!r} (known: t, r, gray)")
    config = common.stylegan3_config(cfg="stylegan3-r" if variant == "r" else "stylegan3-t",
                                     batch_size=32, gamma=0.025, total_kimg=1000)
    build = "haar_64_gray" if variant == "gray" else "haar_64"
    config.data.name = f"image_mix/{build}"
    config.data.xflip = True
    config.data.prepare = ("python -m data_pipelines.build image_mix --manual_dir=DIR "
                           f"--config={build}")
    config.log.kimg_per_tick = 4.0
    config.log.image_every_ticks = 10
    config.log.snapshot_every_ticks = 10
    config.log.metrics_every_ticks = 10
    config.log.grid_truncation_psi = 0.65
    return config
