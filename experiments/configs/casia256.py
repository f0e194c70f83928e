"""StyleGAN2-ADA on MTCNN-filtered CASIA-WebFace at 256² (same recipe as celeba256.py).

    python -m data_pipelines.build casia_webface --manual_dir=DIR --config=mtcnn_256
    python -m experiments.train --config=casia256.py --workdir=runs/casia256

DIR holds CASIA-WebFace's identity sub-folders (or a zip of them). Official `paper256` preset;
the study reports FID50k ≈ 4.6 after the full schedule. Variants: `casia256.py:short`,
`casia256.py:stylegan1` (the official StyleGAN v1 recipe, as `celeba256.py:stylegan1`).
"""

from experiments.configs import celeba256


def get_config(arg=None):
    config = celeba256.get_config(arg)
    config.data.name = "casia_webface/mtcnn_256"
    config.data.prepare = ("python -m data_pipelines.build casia_webface --manual_dir=DIR "
                           "--config=mtcnn_256")
    return config
