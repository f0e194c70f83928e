"""Building blocks of the training configs (official StyleGAN2-ADA / StyleGAN3 presets).

Every config file in this folder is `get_config(arg=None) -> ConfigDict` with sections:
  data:    name (TFDS name, prepared folder or image folder), split (slices allowed:
           `train[:-500]`), resolution, xflip, use_labels (conditional training on the
           dataset's labels), folder_labels, crop_box (image folders: `(left, top, right,
           bottom)` fractions cut before resizing), data_dir, prepare (the command that builds
           the dataset; shown when it is missing).
  model:   G_class / G_kwargs, D_class / D_kwargs: the official class names and constructor
           kwargs (resolution, channels and c_dim come from the dataset).
  train:   flaxgan.train.step.Hyperparameters fields + total_kimg, allow_batch_size_change
           (resume a checkpoint with another batch_size; off: that is an error).
  augment: pipe (ADA preset name, '' = off), p (initial / fixed p), ada_target (None = fixed p),
           ada_interval, ada_kimg.
  log:     kimg_per_tick, image_every_ticks, snapshot_every_ticks, metrics_every_ticks, metrics,
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

__all__ = ["stylegan2_config", "stylegan3_config", "REPO_ROOT"]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _base(batch_size: int, gamma: float, ema_kimg: float, ema_rampup: float | None,
          total_kimg: float) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.resume_pkl = ""
    config.data = ml_collections.ConfigDict(dict(
        name="", split="train", resolution=ml_collections.FieldReference(None, field_type=int),
        xflip=False, use_labels=False, folder_labels=False,
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
