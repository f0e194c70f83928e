"""StyleGAN2-ADA on FFHQ at 256² with the official `paper256` preset.

    python -m data_pipelines.build ffhq --manual_dir=DIR --config=256
    python -m experiments.train --config=ffhq256.py --workdir=runs/ffhq256

DIR holds `images1024x1024/` (or its zip). Expect the paper's FFHQ-256 numbers (FID ≈ 3.9 with
x-flips at 25,000 kimg on 8 GPUs). Variants: `ffhq256.py:short`.
"""

from experiments.configs import celeba256


def get_config(arg=None):
    config = celeba256.get_config(arg)
    config.data.name = "ffhq/256"
    config.data.prepare = "python -m data_pipelines.build ffhq --manual_dir=DIR --config=256"
    return config
