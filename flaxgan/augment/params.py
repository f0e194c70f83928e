"""ADA steps 1 and 2: the official presets, the random draws of every enabled transform and
the transform parameters they resolve to for a probability `p` (see `flaxgan.augment`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AUGPIPE_SPECS", "AugmentConfig", "GEOMETRIC", "COLOR", "Draws", "Params",
           "sample_draws", "resolve_params"]

Draws = dict[str, dict[str, jax.Array]]
Params = dict[str, jax.Array]

# Probability multipliers of the official presets (train.py `--augpipe`).
_BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
_GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
_COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
AUGPIPE_SPECS: dict[str, dict[str, float]] = {
    "blit": _BLIT,
    "geom": _GEOM,
    "color": _COLOR,
    "filter": {"imgfilter": 1.0},
    "noise": {"noise": 1.0},
    "cutout": {"cutout": 1.0},
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1.0},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1.0, "noise": 1.0},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1.0, "noise": 1.0, "cutout": 1.0},
}

# Transform names in the official order of their random draws.
GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probability multipliers (0 = off) and strengths; defaults are the official ones.

    A transform fires for a sample with probability `multiplier * p`. Field names are the
    official `AugmentPipe` arguments, so `AugmentConfig(**official_kwargs)` works.
    """

    # Pixel blitting.
    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    xint_max: float = 0.125       # integer translation range, fraction of the image size
    # General geometric transforms.
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    scale_std: float = 0.2        # log2 std of isotropic scaling
    rotate_max: float = 1.0       # rotation range, 1 = full circle
    aniso_std: float = 0.2        # log2 std of anisotropic scaling
    xfrac_std: float = 0.125      # std of fractional translation, fraction of the image size
    # Colour transforms.
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    brightness_std: float = 0.2   # std of the added brightness
    contrast_std: float = 0.5     # log2 std of contrast
    hue_max: float = 1.0          # hue rotation range, 1 = full circle
    saturation_std: float = 1.0   # log2 std of saturation
    # Image-space filtering.
    imgfilter: float = 0.0
    imgfilter_bands: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # multiplier per frequency band
    imgfilter_std: float = 1.0    # log2 std of a band's amplification
    # Image-space corruptions.
    noise: float = 0.0
    cutout: float = 0.0
    noise_std: float = 0.1        # std of the additive RGB noise's sigma
    cutout_size: float = 0.5      # cutout square side, fraction of the image size

    def __post_init__(self):
        object.__setattr__(self, "imgfilter_bands", tuple(float(b) for b in self.imgfilter_bands))
        if len(self.imgfilter_bands) != 4:
            raise ValueError(f"imgfilter_bands needs 4 entries, got {self.imgfilter_bands}")

    @classmethod
    def preset(cls, name: str, **overrides) -> AugmentConfig:
        """The official `--augpipe` preset `name` ('bgc', 'bgcfnc', ...) with overrides."""
        if name not in AUGPIPE_SPECS:
            raise ValueError(f"unknown augpipe {name!r}; expected one of {sorted(AUGPIPE_SPECS)}")
        return cls(**{**AUGPIPE_SPECS[name], **overrides})


# ---------------------------------------------------------------------------------------------
# Step 1: random draws.


def sample_draws(key: jax.Array, shape: tuple[int, int, int, int], config: AugmentConfig) -> Draws:
    """Uniform/normal draws for every enabled transform, as the official pipeline makes them.

    Args:
      key: PRNG key.
      shape: image batch shape `(N, H, W, C)`.
      config: which transforms are enabled (static).

    Returns:
      `{transform: {'value': ..., 'gate': [N] uniform}}`; values are `[N]` (or `[N, 2]` for
      translations), uniform for xflip/rotate90/xint/rotations/lumaflip/hue and normal for the
      log-normal and Gaussian parameters. 'imgfilter' has `[N, 4]` value and gate (one per
      band); 'noise' adds a normal 'field' `[N, H, W, C]`; 'cutout' has a gate and a uniform
      'center' `[N, 2]` (x, y). Hue and saturation are drawn only for C > 1, as the official.
    """
    n, h, w, c = shape
    normal_valued = {"scale", "aniso", "xfrac", "brightness", "contrast", "saturation"}
    multiplier = {"rotate_pre": config.rotate, "rotate_post": config.rotate}
    # (transform, field, 'uniform'/'normal', width), in the official order.
    layout: list[tuple[str, str, str, int]] = []
    for name in GEOMETRIC + COLOR:
        if multiplier.get(name, getattr(config, name, 0.0)) <= 0:
            continue
        if name in ("hue", "saturation") and c == 1:
            continue
        width = 2 if name in ("xint", "xfrac") else 1
        layout.append((name, "value", "normal" if name in normal_valued else "uniform", width))
        layout.append((name, "gate", "uniform", 1))
    if config.imgfilter > 0:
        layout += [("imgfilter", "value", "normal", 4), ("imgfilter", "gate", "uniform", 4)]
    if config.noise > 0:
        layout += [("noise", "value", "normal", 1), ("noise", "gate", "uniform", 1)]
    if config.cutout > 0:
        layout += [("cutout", "gate", "uniform", 1), ("cutout", "center", "uniform", 2)]

    # One RNG call for everything (each call compiles a threefry kernel): uniforms in [0, 1),
    # and normals from them by the inverse CDF as `jax.random.normal` does,
    # n = √2 · erf⁻¹(v) with v = 2u - 1 in (-1, 1).
    widths = {kind: sum(width for _, _, k, width in layout if k == kind)
              for kind in ("uniform", "normal")}
    field_size = h * w * c if config.noise > 0 else 0
    pool = jax.random.uniform(key, (n, widths["uniform"] + widths["normal"] + field_size),
                              jnp.float32)
    lowest = np.nextafter(np.float32(-1), np.float32(0))
    normals = np.sqrt(2).astype(np.float32) * jax.lax.erf_inv(
        jnp.maximum(pool[:, widths["uniform"]:] * 2 - 1, lowest))
    pools = {"uniform": pool[:, :widths["uniform"]], "normal": normals}
    offsets = {"uniform": 0, "normal": 0}
    draws: Draws = {}
    for name, field, kind, width in layout:
        column = pools[kind][:, offsets[kind]:offsets[kind] + width]
        offsets[kind] += width
        keep_2d = width > 1 or name == "imgfilter"
        draws.setdefault(name, {})[field] = column if keep_2d else column[:, 0]
    if config.noise > 0:
        draws["noise"]["field"] = normals[:, widths["normal"]:].reshape(n, h, w, c)
    return draws


# ---------------------------------------------------------------------------------------------
# Step 2: parameters.


def _imgfilter_gains(value: jax.Array, fires: jax.Array, std: float) -> jax.Array:
    """Band gains `[N, 4]`: each firing band i is amplified by t_i = 2^(std·n_i), and the gain
    vector renormalised so that the expected power of a 1/f image, Σ_b P_b g_b², is kept."""
    expected_power = jnp.asarray([10.0, 1.0, 1.0, 1.0]) / 13.0
    n = value.shape[0]
    gains = jnp.ones((n, 4), jnp.float32)
    for band in range(4):
        t_band = jnp.where(fires[:, band], jnp.exp2(value[:, band] * std), 1.0)
        t = jnp.ones((n, 4), jnp.float32).at[:, band].set(t_band)
        t = t / jnp.sqrt(jnp.sum(expected_power * jnp.square(t), axis=-1, keepdims=True))
        gains = gains * t
    return gains


def resolve_params(draws: Mapping[str, Mapping[str, jax.Array]], p: jax.Array | float,
                   config: AugmentConfig) -> Params:
    """Per-sample transform parameters; identity where the transform does not fire.

    Args:
      draws: from `sample_draws` (or recorded from the official pipeline).
      p: augmentation probability, a scalar (traced: changing it never recompiles).
      config: multipliers and strengths.

    Returns:
      Only the transforms present in `draws`, each `[N]` unless noted:
      xflip ∈ {0, 1}, rotate90 ∈ {0..3} (quarter turns), xint `[N, 2]` (fraction of the size,
      rounded to pixels when the matrix is built), scale, rotate_pre, aniso, rotate_post
      (radians), xfrac `[N, 2]` (fraction of the size), brightness (offset), contrast (factor),
      lumaflip ∈ {0, 1}, hue (radians), saturation (factor), imgfilter `[N, 4]` band gains,
      noise (sigma) and noise_field `[N, H, W, C]`, cutout_size and cutout_center `[N, 2]`.
    """
    p = jnp.asarray(p, jnp.float32)

    def fires(name: str, probability: jax.Array) -> jax.Array:
        return draws[name]["gate"] < probability

    def pick(name: str, probability: jax.Array, value: jax.Array, identity: float):
        gate = fires(name, probability)
        gate = gate[:, None] if value.ndim == 2 else gate
        return jnp.where(gate, value, jnp.asarray(identity, value.dtype))

    # P(pre-rotation OR post-rotation) = rotate * p  =>  p_rot = 1 - sqrt(1 - rotate * p).
    p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - config.rotate * p, 0.0, 1.0))
    specs = {  # name -> (multiplier, value from the raw draw u or n, identity)
        "xflip": (config.xflip, lambda u: jnp.floor(u * 2), 0.0),
        "rotate90": (config.rotate90, lambda u: jnp.floor(u * 4), 0.0),
        "xint": (config.xint, lambda u: (u * 2 - 1) * config.xint_max, 0.0),
        "scale": (config.scale, lambda n: jnp.exp2(n * config.scale_std), 1.0),
        "rotate_pre": (None, lambda u: (u * 2 - 1) * np.pi * config.rotate_max, 0.0),
        "aniso": (config.aniso, lambda n: jnp.exp2(n * config.aniso_std), 1.0),
        "rotate_post": (None, lambda u: (u * 2 - 1) * np.pi * config.rotate_max, 0.0),
        "xfrac": (config.xfrac, lambda n: n * config.xfrac_std, 0.0),
        "brightness": (config.brightness, lambda n: n * config.brightness_std, 0.0),
        "contrast": (config.contrast, lambda n: jnp.exp2(n * config.contrast_std), 1.0),
        "lumaflip": (config.lumaflip, lambda u: jnp.floor(u * 2), 0.0),
        "hue": (config.hue, lambda u: (u * 2 - 1) * np.pi * config.hue_max, 0.0),
        "saturation": (config.saturation, lambda n: jnp.exp2(n * config.saturation_std), 1.0),
    }
    params: Params = {}
    for name, (multiplier, value_fn, identity) in specs.items():
        if name in draws:
            probability = p_rot if multiplier is None else multiplier * p
            params[name] = pick(name, probability, value_fn(draws[name]["value"]), identity)
    if "imgfilter" in draws:
        band = jnp.asarray(config.imgfilter_bands, jnp.float32)
        gate = draws["imgfilter"]["gate"] < config.imgfilter * p * band
        params["imgfilter"] = _imgfilter_gains(draws["imgfilter"]["value"], gate,
                                               config.imgfilter_std)
    if "noise" in draws:
        sigma = jnp.abs(draws["noise"]["value"]) * config.noise_std
        params["noise"] = jnp.where(fires("noise", config.noise * p), sigma, 0.0)
        params["noise_field"] = draws["noise"]["field"]
    if "cutout" in draws:
        params["cutout_size"] = jnp.where(fires("cutout", config.cutout * p), config.cutout_size,
                                          0.0)
        params["cutout_center"] = draws["cutout"]["center"]
    return params
