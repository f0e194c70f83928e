"""Building blocks of the training configs (official StyleGAN2-ADA / StyleGAN3 presets).

Every config file in this folder is `get_config(arg=None) -> ConfigDict` with `seed`,
`resume_pkl` (start from a snapshot, export folder or bundled name: the official `--resume`)
and `resume_partial` (copy only what matches, e.g. an unconditional model into a conditional
one: `flaxgan.train.partial_resume`), and sections:
  data:    name (TFDS name, prepared folder or image folder), split (slices allowed:
           `train[:-500]`), resolution, xflip, use_labels (conditional training on the
           dataset's labels), folder_labels, attribute_labels (image folders: classes are the
           combinations of these binary CelebA attributes, e.g. `("Male", "Young")` -> 4),
           attr_file (their table; default `<folder>/list_attr_celeba.txt`), crop_box (image
           folders: `(left, top, right, bottom)` fractions cut before resizing), data_dir,
           prepare (the command that builds the dataset; shown when it is missing).
  model:   G_class / G_kwargs, D_class / D_kwargs: the official class names and constructor
           kwargs (resolution, channels and c_dim come from the dataset).
  train:   flaxgan.train.step.Hyperparameters fields + total_kimg, allow_batch_size_change
           (resume a checkpoint with another batch_size; off: that is an error).
  augment: pipe (ADA preset name, '' = off), p (initial / fixed p), ada_target (None = fixed p),
           ada_interval, ada_kimg.
  schedule: (StyleGAN v1 only) the official `training_schedule` arguments of progressive
           growing (`flaxgan.train.progressive.Schedule`; resolution keys as strings).
  log:     kimg_per_tick (None: the schedule's tick lengths), image_every_ticks,
           snapshot_every_ticks, metrics_every_ticks, metrics,
           metrics_split (real images of the metrics, e.g. a held-out slice; default: the
           training split), metrics_cache_dir (dataset statistics; default ~/.cache/flaxgan),
           metrics_weights
           (detector files: inception, vgg16 for pr50k3*/ppl_*, attribute_classifier for ls;
           unset = $FLAXGAN_INCEPTION / $FLAXGAN_VGG16 / the installed FID Inception),
           keep_checkpoints, grid_size, grid_truncation_psi, progress.
"""

from __future__ import annotations

import dataclasses
import pathlib

import ml_collections

from flaxgan.train.step import Hyperparameters

__all__ = ["stylegan2_config", "stylegan3_config", "stylegan1_config", "official_schedule",
           "REPO_ROOT"]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _base(batch_size: int, gamma: float, ema_kimg: float, ema_rampup: float | None,
          total_kimg: float) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.resume_pkl = ""
    config.resume_partial = False
    config.data = ml_collections.ConfigDict(dict(
        name="", split="train", resolution=ml_collections.FieldReference(None, field_type=int),
        xflip=False, use_labels=False, folder_labels=False, attribute_labels=(),
        attr_file=ml_collections.FieldReference(None, field_type=str),
        data_dir=ml_collections.FieldReference(None, field_type=str),
        crop_box=ml_collections.FieldReference(None, field_type=tuple), prepare=""))
    # The objective's defaults live once, in Hyperparameters; ADA's fields go to `augment`.
    train = {name: value for name, value in dataclasses.asdict(Hyperparameters()).items()
             if not name.startswith("ada_")}
    train.update(batch_size=batch_size, total_kimg=total_kimg, allow_batch_size_change=False,
                 r1_gamma=gamma, ema_kimg=ema_kimg,
                 ema_rampup=ml_collections.FieldReference(ema_rampup, field_type=float))
    config.train = ml_collections.ConfigDict(train)
    config.augment = ml_collections.ConfigDict(dict(
        pipe="bgc", p=0.0, ada_target=ml_collections.FieldReference(0.6, field_type=float),
        ada_interval=4, ada_kimg=500.0))
    config.log = ml_collections.ConfigDict(dict(
        kimg_per_tick=4.0, image_every_ticks=50, snapshot_every_ticks=50, metrics_every_ticks=50,
        metrics=("fid50k_full",), metrics_split=ml_collections.FieldReference(
            None, field_type=str), metrics_cache_dir=ml_collections.FieldReference(
            None, field_type=str), metrics_weights=ml_collections.ConfigDict(dict(
                inception=ml_collections.FieldReference(None, field_type=str),
                vgg16=ml_collections.FieldReference(None, field_type=str),
                attribute_classifier=ml_collections.FieldReference(None, field_type=str))),
        keep_checkpoints=3, grid_size=(8, 4), grid_truncation_psi=1.0, progress=True))
    return config


def stylegan2_config(*, batch_size: int, gamma: float, ema_kimg: float,
                     ema_rampup: float | None, mbstd: int, fmaps: float, mapping_layers: int,
                     total_kimg: float, z_dim: int = 512, w_dim: int = 512,
                     channel_max: int = 512) -> ml_collections.ConfigDict:
    """An official StyleGAN2-ADA `--cfg` preset (train.py `cfg_specs`): channel_base
    `fmaps * 32768`, 4 fp16 (bf16 on accelerators) resolutions, conv_clamp 256, G `skip`,
    D `resnet`, minibatch-std group `mbstd` (capped by the per-device batch)."""
    config = _base(batch_size, gamma, ema_kimg, ema_rampup, total_kimg)
    channel_base = int(fmaps * 32768)
    config.model = ml_collections.ConfigDict(dict(
        G_class="training.networks.Generator",
        G_kwargs=dict(z_dim=z_dim, w_dim=w_dim,
                      mapping_kwargs=dict(num_layers=mapping_layers),
                      synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max,
                                            num_fp16_res=4, conv_clamp=256)),
        D_class="training.networks.Discriminator",
        D_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
                      conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=mbstd))))
    return config


def stylegan3_config(*, cfg: str, batch_size: int, gamma: float, total_kimg: float,
                     cbase: int = 32768, cmax: int = 512, mapping_layers: int = 2,
                     z_dim: int = 512, w_dim: int = 512, mbstd: int = 4
                     ) -> ml_collections.ConfigDict:
    """An official StyleGAN3 `--cfg=stylegan3-t|-r` setting (stylegan3 train.py): no path
    length, no style mixing, D `orig`, EMA over `batch * 10 / 32` kimg with ramp-up 0.05,
    Adam lr 0.0025 (G) / 0.002 (D), and for config R conv kernel 1, radial filters, doubled
    channels and a blur of D inputs fading over `200 * batch / 32` kimg."""
    if cfg not in ("stylegan3-t", "stylegan3-r"):
        raise ValueError(f"cfg must be stylegan3-t or stylegan3-r, got {cfg!r}")
    config = _base(batch_size, gamma, ema_kimg=batch_size * 10 / 32, ema_rampup=0.05,
                   total_kimg=total_kimg)
    config.train.d_lr = 0.002
    config.train.pl_weight = 0.0
    config.train.style_mixing_prob = 0.0
    config.train.ema_update_phases = ("Dmain",)
    g_kwargs = dict(z_dim=z_dim, w_dim=w_dim, mapping_kwargs=dict(num_layers=mapping_layers),
                    channel_base=cbase, channel_max=cmax, magnitude_ema_beta=0.5 ** (
                        batch_size / (20 * 1e3)))
    if cfg == "stylegan3-r":
        g_kwargs.update(conv_kernel=1, channel_base=cbase * 2, channel_max=cmax * 2,
                        use_radial_filters=True)
        config.train.blur_init_sigma = 10.0
        config.train.blur_fade_kimg = batch_size * 200 / 32
    config.model = ml_collections.ConfigDict(dict(
        G_class="training.networks_stylegan3.Generator", G_kwargs=g_kwargs,
        D_class="training.networks_stylegan2.Discriminator",
        D_kwargs=dict(architecture="orig", channel_base=cbase, channel_max=cmax,
                      num_fp16_res=4, conv_clamp=256,
                      epilogue_kwargs=dict(mbstd_group_size=mbstd))))
    return config


def official_schedule(**overrides) -> ml_collections.ConfigDict:
    """The official StyleGAN `train.py` schedule (its 8-GPU setting, the paper's): start at 8²,
    600 kimg stable + 600 kimg fade-in per resolution, global minibatch 512 at 4², halving
    per resolution to 32 from 64², learning rate 0.001 (0.0015 at 128², 0.002 at 256², 0.003
    above), ticks of `tick_kimg_dict`. Dict keys are resolutions as strings (ConfigDict keys)."""
    lrates = {"128": 0.0015, "256": 0.002, "512": 0.003, "1024": 0.003}
    schedule = dict(
        lod_initial_resolution=8, lod_training_kimg=600.0, lod_transition_kimg=600.0,
        minibatch_base=32, minibatch_dict={"4": 512, "8": 256, "16": 128, "32": 64, "64": 32},
        max_minibatch_per_gpu={}, G_lrate_base=0.001, G_lrate_dict=dict(lrates),
        D_lrate_base=0.001, D_lrate_dict=dict(lrates), lrate_rampup_kimg=0.0,
        tick_kimg_base=160.0, tick_kimg_dict={"4": 160.0, "8": 140.0, "16": 120.0, "32": 100.0,
                                              "64": 80.0, "128": 60.0, "256": 40.0,
                                              "512": 30.0, "1024": 20.0})
    schedule.update(overrides)
    return ml_collections.ConfigDict(schedule)


def stylegan1_config(*, total_kimg: float = 25000, schedule: ml_collections.ConfigDict | None
                     = None, fmap_base: int = 8192, fmap_max: int = 512, latent_size: int = 512,
                     mapping_layers: int = 8, mapping_fmaps: int = 512,
                     mbstd_group_size: int = 4) -> ml_collections.ConfigDict:
    """The official StyleGAN (v1) recipe (NVlabs/stylegan `train.py`, 'sgan'): `G_style` +
    `D_basic` with their defaults, progressive growing (`official_schedule`), non-saturating
    logistic loss with R1 γ = 10 every minibatch (`D_logistic_simplegp`), no path length, style
    mixing 0.9 among the layers in use, TF 1's Adam (ε on the raw √v) with β = (0, 0.99),
    ε = 1e-8, a D step then a G step, G EMA half-life 10 kimg without ramp-up
    (`G_smoothing_kimg`), no augmentation (mirror augment is `data.xflip`). `train.batch_size`
    is unused: each stage's minibatch comes from the schedule."""
    schedule = schedule if schedule is not None else official_schedule()
    config = _base(batch_size=int(schedule.minibatch_base), gamma=10.0, ema_kimg=10.0,
                   ema_rampup=None, total_kimg=total_kimg)
    config.train.update(dict(progressive=True, d_first=True, g_reg_interval=None,
                             d_reg_interval=None, pl_weight=0.0, style_mixing_prob=0.9,
                             g_lr=float(schedule.G_lrate_base),
                             d_lr=float(schedule.D_lrate_base), adam="tf1"))
    config.augment.pipe = ""
    config.augment.ada_target = None
    config.schedule = schedule
    config.log.kimg_per_tick = None
    # Official: an image grid every tick, a snapshot and its metric (FID50k) every 10 ticks.
    config.log.update(dict(image_every_ticks=1, snapshot_every_ticks=10, metrics_every_ticks=10,
                           metrics=("fid50k",)))
    g_kwargs = dict(latent_size=latent_size, dlatent_size=latent_size,
                    mapping_layers=mapping_layers, mapping_fmaps=mapping_fmaps,
                    fmap_base=fmap_base, fmap_max=fmap_max, style_mixing_prob=0.9)
    config.model = ml_collections.ConfigDict(dict(
        G_class="training.networks_stylegan.G_style", G_kwargs=g_kwargs,
        D_class="training.networks_stylegan.D_basic",
        D_kwargs=dict(fmap_base=fmap_base, fmap_max=fmap_max,
                      mbstd_group_size=mbstd_group_size)))
    return config
