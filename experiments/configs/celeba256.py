"""StyleGAN2-ADA re-training on MTCNN-filtered CelebA at 256² (the StyleGAN re-training study).

Prepare the data once (CelebA's `img_align_celeba/` or `img_align_celeba.zip` and
`list_attr_celeba.txt` in DIR):

    python -m data_pipelines.build celeba_faces --manual_dir=DIR --config=mtcnn_256

then train with the official `paper256` preset (batch 64, R1 γ = 1, EMA 20 kimg, mbstd 8,
half-width channels, 8 mapping layers, ADA `bgc` with target 0.6, x-flips):

    python -m experiments.train --config=celeba256.py --workdir=runs/celeba256

Expect the study's FID50k ≈ 4.8 after about 25,000 kimg (paper256 schedule) on 8 GPUs; on a
single accelerator the same run takes proportionally longer. FID50k is computed every 50 ticks
and the best checkpoint kept under `best/`. Variants: `celeba256.py:short` (5,000 kimg).

`celeba256.py:stylegan1` trains StyleGAN (v1) instead, the official NVlabs/stylegan recipe
(`common.stylegan1_config`: progressive growing from 8² with 600 + 600 kimg per resolution,
minibatch 256 at 8² halving to 32 from 64², learning rates per resolution, R1 γ = 10, G EMA
10 kimg, x-flips, 25,000 kimg, FID50k every 10 ticks as the official snapshots):

    python -m experiments.train --config=celeba256.py:stylegan1 --workdir=runs/celeba256_v1

256² fades in from 5,400 kimg and is alone from 6,000 kimg; each new resolution compiles new
steps once (its minibatch differs). The schedule is a function of kimg, so a resumed run
continues at the same level of detail.
"""

from experiments.configs import common


def get_config(arg=None):
    config = common.stylegan2_config(
        batch_size=64, gamma=1.0, ema_kimg=20.0, ema_rampup=None, mbstd=8, fmaps=0.5,
        mapping_layers=8, total_kimg=25000)
    config.data.name = "celeba_faces/mtcnn_256"
    config.data.xflip = True
    config.data.prepare = ("python -m data_pipelines.build celeba_faces --manual_dir=DIR "
                           "--config=mtcnn_256")
    if arg == "stylegan1":
        config = stylegan1(config.data)
    elif arg == "short":
        config.train.total_kimg = 5000
    elif arg:
        raise ValueError(f"unknown variant {arg!r} (known: short, stylegan1)")
    return config


def stylegan1(data):
    """The official StyleGAN (v1) recipe on the same data (mirror augment on)."""
    config = common.stylegan1_config(total_kimg=25000)
    config.data = data
    return config
