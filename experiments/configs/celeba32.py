"""StyleGAN2-ADA at 32² on the 4,000 aligned CelebA faces of ../shared/data/celeba_small: the
recipe of the bundled `celeba32` model, sized for a 2-core CPU.

    python -m experiments.train --config=experiments/configs/celeba32.py --workdir=runs/celeba32

Data: the face box of aligned CelebA (centre (89, 121), side 128 on the 178×218 originals, the
box of the progressive-GAN CelebA crops) cut from each image and resized to 32² (Lanczos);
files 001001–004500 (3,500, sorted names) train with x-flips, the last 500 (004501–005000) are
held out for the metric hook (`fid1k_full`, `kid1k_full`: 1,000 generated vs the 500 held-out
faces; FID of so few images is biased high, KID is not). Final figures (FID/KID of 10k generated
images against the held-out 500 and against all 4,000) come from `tools/eval_splits.py`; the
record is in `docs/training/celeba32/`.

Recipe (the official `--cfg=auto` rules at 32² unless said): batch 32, Adam lr 0.0025, R1 γ =
0.0002·res²/batch ≈ 0.0064, EMA 10 kimg with ramp-up 0.05, 2 mapping layers, minibatch-std
group 4, path-length regularisation (weight 2, every 4th minibatch) and style mixing 0.9 as in
StyleGAN2 (they shape the W space that projection and editing use), G `skip`, D `resnet`, ADA
`bgc` with target 0.6 — adjusted over 100 kimg instead of 500, the run being short. Channels
halve with each doubling of resolution from 128 at 4²–8² to 64 at 16² and 32 at 32²
(channel_base 1024, channel_max 128): every resolution costs about the same, which keeps a
kimg near 11 s on 2 CPU cores (float32).

Time: 13.7 sec/kimg on 2 idle cores (17.7 median over the bundled run, which shared its
cores), so the 800 kimg take about 3 hours plus the metric evaluations (~5 min each on a CPU).
The run is resumable: rerunning the command continues from the last checkpoint (every 40 kimg).
Expect (the bundled model: 480 kimg, 2.6 h of training ticks on shared cores): FID10k 17.3 /
KID 0.0090 against all 4,000 faces, 36.4 / 0.0092 against the 500 held out; ADA's p stays near
0 (r_t < 0.6).
`:64` trains the 64² variant (channel_base 2048: 32² at 64 channels, 64² at 32) for when more
compute exists (a GPU: minutes per 100 kimg).
"""

from experiments.configs import common

# Aligned CelebA face box: (left, top, right, bottom) as fractions of 178 × 218.
CELEBA_FACE_BOX = (25 / 178, 57 / 218, 153 / 178, 185 / 218)
HELD_OUT = 500


def get_config(arg=None):
    resolution = int(arg or 32)
    if resolution not in (32, 64):
        raise ValueError(f"resolution must be 32 or 64, got {arg!r}")
    batch = 32
    config = common.stylegan2_config(
        batch_size=batch, gamma=0.0002 * resolution ** 2 / batch, ema_kimg=batch * 10 / 32,
        ema_rampup=0.05, mbstd=4, fmaps=1024 * resolution / 32 / 32768, mapping_layers=2,
        total_kimg=800.0, channel_max=128)
    config.data.name = str(common.REPO_ROOT.parent / "shared" / "data" / "celeba_small")
    config.data.split = f"train[:-{HELD_OUT}]"
    config.data.resolution = resolution
    config.data.crop_box = CELEBA_FACE_BOX
    config.data.xflip = True
    config.augment.ada_kimg = 100.0
    config.log.kimg_per_tick = 4.0
    config.log.image_every_ticks = 10
    config.log.snapshot_every_ticks = 10
    config.log.metrics_every_ticks = 50
    config.log.metrics = ("fid1k_full", "kid1k_full")
    config.log.metrics_split = f"train[-{HELD_OUT}:]"
    config.log.keep_checkpoints = 3
    return config
