"""Adaptive discriminator augmentation (ADA) of StyleGAN2-ADA (Karras et al. 2020), NHWC.

The pipeline of the paper (app. B) and of the official `AugmentPipe`, in three pure steps so
that each can be checked alone:

1. `sample_draws(key, shape, config)`: the raw uniform/normal numbers, per sample and per
   enabled transform, in the official order (a value and a gate for each transform).
2. `resolve_params(draws, p, config)`: transform parameters; a transform fires for a sample when
   its gate `u < multiplier * p`, otherwise its parameter is the identity. `p` is traced.
3. `apply_params(images, params)`: geometric transforms composed into one inverse 3×3 matrix
   and applied once (reflect padding, 2× upsampling with the sym6 wavelet low-pass, bilinear
   sampling, 2× downsampling), colour transforms composed into one 4×4 matrix, then the
   image-space filter, additive noise and cutout.

`augment(images, key, p, config)` chains them; it is jit-able with `config` static, and
differentiable with respect to `images` (the generator is trained through it). Every sample
makes its own decisions. The adaptive `p` heuristic (paper sec. 3) is `ada_update`.

The official pipeline pads by the largest margin any sample of the batch needs, a
data-dependent shape; here the padding is always its official upper bound (size - 1) and the
part beyond the batch's margin is zeroed, which gives the official result with static shapes.
The price is a fixed 2× canvas of (6H - 4) × (6W - 4) pixels per image (28 MB at 256², RGB,
float32), the size the official reaches when a batch's margin hits its clamp. The 2×
resamplers are the network's polyphase ones (`flaxgan.nn.polyphase`, custom VJPs): forward-mode
autodiff (`jax.jvp`) is not supported; reverse mode to any order is.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.nn import polyphase
from flaxgan.nn.fir import setup_filter

__all__ = [
    "AUGPIPE_SPECS",
    "AugmentConfig",
    "GEOMETRIC",
    "COLOR",
    "sample_draws",
    "resolve_params",
    "geometric_matrix",
    "color_matrix",
    "apply_geometric",
    "apply_color",
    "apply_imgfilter",
    "apply_noise",
    "apply_cutout",
    "apply_params",
    "augment_with_draws",
    "augment",
    "make_augment_fn",
    "real_sign_stats",
    "ada_update",
]

Draws = dict[str, dict[str, jax.Array]]
Params = dict[str, jax.Array]

# Low-pass decomposition filters of the Daubechies symlets (the PyWavelets `dec_lo` taps).
_SYM2 = np.array([-0.12940952255092145, 0.22414386804185735, 0.836516303737469,
                  0.48296291314469025])
_SYM6 = np.array([0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
                  -0.048311742585633, 0.4910559419267466, 0.787641141030194,
                  0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
                  0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])

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


# ---------------------------------------------------------------------------------------------
# Step 3a: geometric transforms. Matrices map output pixels to input pixels (inverse maps), in
# pixel units with the origin at the image centre.


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _matrix(rows: list[list], n: int) -> jax.Array:
    """Stacks scalar/`[N]` entries into `[N, R, K]`."""
    return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(e, jnp.float32), (n,))
                                 for e in row], axis=-1) for row in rows], axis=-2)


def _translate2d(tx, ty, n: int) -> jax.Array:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n)


def _scale2d(sx, sy, n: int) -> jax.Array:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n)


def _rotate2d(theta, n: int) -> jax.Array:
    c, s = jnp.cos(theta), jnp.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], n)


def geometric_matrix(params: Mapping[str, jax.Array], height: int, width: int) -> jax.Array:
    """Inverse geometric transform `G⁻¹ [N, 3, 3]` (output pixel -> input pixel).

    G⁻¹ = F⁻¹ R90⁻¹ T_int⁻¹ S⁻¹ R_pre⁻¹ A⁻¹ R_post⁻¹ T_frac⁻¹, with the inverse of each factor
    of the forward transform (x-flip F = diag(1 - 2i, 1), R90 a rotation by -i·π/2, integer
    translation by round(t·size), isotropic scale S = diag(s, s), anisotropic A = diag(s, 1/s),
    rotations by -θ, fractional translation by t·size). Transforms absent from `params` are
    skipped.
    """
    n = next(iter(params.values())).shape[0]
    g = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (n, 3, 3))
    if "xflip" in params:
        g = _matmul(g, _scale2d(1 / (1 - 2 * params["xflip"]), 1, n))
    if "rotate90" in params:
        g = _matmul(g, _rotate2d(np.pi / 2 * params["rotate90"], n))
    if "xint" in params:
        t = params["xint"]
        g = _matmul(g, _translate2d(-jnp.round(t[:, 0] * width), -jnp.round(t[:, 1] * height), n))
    if "scale" in params:
        s = params["scale"]
        g = _matmul(g, _scale2d(1 / s, 1 / s, n))
    if "rotate_pre" in params:
        g = _matmul(g, _rotate2d(params["rotate_pre"], n))
    if "aniso" in params:
        s = params["aniso"]
        g = _matmul(g, _scale2d(1 / s, 1 / (1 / s), n))
    if "rotate_post" in params:
        g = _matmul(g, _rotate2d(params["rotate_post"], n))
    if "xfrac" in params:
        t = params["xfrac"]
        g = _matmul(g, _translate2d(-(t[:, 0] * width), -(t[:, 1] * height), n))
    return g


def _geometric_margin(g_inv: jax.Array, height: int, width: int, pad: int) -> jax.Array:
    """The official reflect padding `(x0, y0, x1, y1)`, int32: how far the batch's transformed
    image corners reach outside the image, plus 2·pad pixels, clamped to [0, size - 1]."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = jnp.asarray([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], jnp.float32)
    cp = _matmul(g_inv, corners.T)[:, :2, :]                      # [N, xy, corner]
    cp = jnp.transpose(cp, (1, 0, 2)).reshape(2, -1)              # [xy, N * corner]
    margin = jnp.max(jnp.concatenate([-cp, cp]), axis=1)          # [x0, y0, x1, y1]
    margin = margin + jnp.asarray([pad * 2 - cx, pad * 2 - cy] * 2, jnp.float32)
    margin = jnp.clip(margin, 0.0, jnp.asarray([width - 1, height - 1] * 2, jnp.float32))
    return jnp.ceil(margin).astype(jnp.int32)


def _bilinear_sample(images: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Bilinear samples of `images [N, H, W, C]` at pixel coordinates `x, y [N, P]` (pixel
    centres at integers), zero outside the image: `[N, P, C]`."""
    n, h, w, c = images.shape
    flat = images.reshape(n, h * w, c)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    out = jnp.zeros((n, x.shape[1], c), images.dtype)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = jnp.clip(yi, 0, h - 1).astype(jnp.int32) * w + jnp.clip(xi, 0, w - 1).astype(
            jnp.int32)
        values = jnp.take_along_axis(flat, index[..., None], axis=1)
        out = out + values * jnp.where(inside, weight, 0.0)[..., None]
    return out


def apply_geometric(images: jax.Array, g_inv: jax.Array) -> jax.Array:
    """Resamples `images [N, H, W, C]` with the inverse transforms `g_inv [N, 3, 3]`.

    As the official: reflect-pad by the batch's margin, upsample 2× with the sym6 low-pass,
    sample bilinearly (zeros outside) on a grid of the output plus 2·pad pixels per side at
    twice the resolution, then low-pass and decimate by 2 (correlation), cropping the extra.
    In pixel coordinates of the 2× canvas padded by M on each side, output grid point j
    samples 2·G⁻¹(v) + 2M + size - 1 with v = (j + 1)/2 - (size + 2·pad)/2 (per axis).
    The padding is static (M = size - 1, the official maximum); the rows/columns beyond the
    batch's margin are zeroed before and after the upsampling, as if they did not exist.
    """
    n, h, w, c = images.shape
    hz = setup_filter(_SYM6)
    pad = hz.shape[0] // 4
    mx0, my0, mx1, my1 = _geometric_margin(g_inv, h, w, pad)
    big_x, big_y = w - 1, h - 1

    def band(size: int, big: int, lo: jax.Array, hi: jax.Array, up: int) -> jax.Array:
        index = jnp.arange((size + 2 * big) * up)
        return ((index >= (big - lo) * up) & (index < (big + size + hi) * up)).astype(jnp.float32)

    canvas = jnp.pad(images, ((0, 0), (big_y, big_y), (big_x, big_x), (0, 0)), mode="reflect")
    canvas = canvas * (band(h, big_y, my0, my1, 1)[:, None, None]
                       * band(w, big_x, mx0, mx1, 1)[None, :, None])
    canvas = polyphase.upsample2d(canvas, hz, 2)
    canvas = canvas * (band(h, big_y, my0, my1, 2)[:, None, None]
                       * band(w, big_x, mx0, mx1, 2)[None, :, None])

    grid_h, grid_w = 2 * (h + 2 * pad), 2 * (w + 2 * pad)
    vy, vx = jnp.meshgrid((jnp.arange(grid_h) + 1) / 2 - (h + 2 * pad) / 2,
                          (jnp.arange(grid_w) + 1) / 2 - (w + 2 * pad) / 2, indexing="ij")
    v = jnp.stack([vx.ravel(), vy.ravel(), jnp.ones(grid_h * grid_w)])  # [3, P]
    src = _matmul(g_inv[:, :2, :], v.astype(jnp.float32))               # [N, 2, P]
    x = 2 * src[:, 0] + (2 * big_x + w - 1)
    y = 2 * src[:, 1] + (2 * big_y + h - 1)
    sampled = _bilinear_sample(canvas, x, y).reshape(n, grid_h, grid_w, c)
    # Low-pass with the same wavelet (correlation), decimate, and crop the 2·pad extra.
    return polyphase.downsample2d(sampled, hz, 2, padding=-2 * pad, flip_filter=True)


# ---------------------------------------------------------------------------------------------
# Step 3b: colour transforms. C [N, 4, 4] acts on homogeneous RGB: rgb' = C[:3,:3] rgb + C[:3,3].


def color_matrix(params: Mapping[str, jax.Array]) -> jax.Array:
    """Colour transform `C [N, 4, 4]` = Sat · Hue · LumaFlip · Contrast · Brightness.

    Brightness translates by b along (1, 1, 1); contrast scales by c; with the luma axis
    v = (1, 1, 1, 0)/√3, luma flip is the Householder reflection I - 2vvᵀ (when i = 1), hue a
    rotation by θ about v (Rodrigues), saturation vvᵀ + (I - vvᵀ)·s. Transforms absent from
    `params` are skipped.
    """
    n = next(iter(params.values())).shape[0]
    eye = jnp.eye(4, dtype=jnp.float32)
    v = jnp.asarray(np.array([1, 1, 1, 0]) / np.sqrt(3), jnp.float32)
    vv = jnp.outer(v, v)
    c = jnp.broadcast_to(eye, (n, 4, 4))
    if "brightness" in params:
        b = params["brightness"]
        c = _matmul(_matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], n), c)
    if "contrast" in params:
        s = params["contrast"]
        c = _matmul(_matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], n), c)
    if "lumaflip" in params:
        c = _matmul(eye - 2 * vv * params["lumaflip"][:, None, None], c)
    if "hue" in params:
        theta = params["hue"]
        vx, vy, vz = v[0], v[1], v[2]
        sn, cs = jnp.sin(theta), jnp.cos(theta)
        cc = 1 - cs
        rot = _matrix([[vx * vx * cc + cs, vx * vy * cc - vz * sn, vx * vz * cc + vy * sn, 0],
                       [vy * vx * cc + vz * sn, vy * vy * cc + cs, vy * vz * cc - vx * sn, 0],
                       [vz * vx * cc - vy * sn, vz * vy * cc + vx * sn, vz * vz * cc + cs, 0],
                       [0, 0, 0, 1]], n)
        c = _matmul(rot, c)
    if "saturation" in params:
        c = _matmul(vv + (eye - vv) * params["saturation"][:, None, None], c)
    return c


def apply_color(images: jax.Array, color: jax.Array) -> jax.Array:
    """Applies `color [N, 4, 4]` to RGB `images [N, H, W, 3]`, or to grayscale `[N, H, W, 1]`
    as the official: with the mean row m of C[:3], l' = l·(m₀ + m₁ + m₂) + m₃."""
    channels = images.shape[-1]
    if channels == 3:
        mix, offset = color[:, None, None, :3, :3], color[:, None, None, :3, 3]
        return jnp.sum(mix * images[..., None, :], axis=-1) + offset
    if channels == 1:
        row = jnp.mean(color[:, :3, :], axis=1)                       # [N, 4]
        gain = jnp.sum(row[:, :3], axis=1)
        return images * gain[:, None, None, None] + row[:, 3, None, None, None]
    raise ValueError(f"colour augmentation needs RGB (3) or L (1) channels, got {channels}")


# ---------------------------------------------------------------------------------------------
# Step 3c: image-space filtering and corruptions.


def _filter_bank() -> np.ndarray:
    """The 4 band-pass filters `[4, 43]` of the image-space filter (a 4-level sym2 filter bank):
    band 0 the low-pass H(z)H(z⁻¹)/2 cascade, bands 1-3 the high-passes H(-z)H(-z⁻¹)/2 at
    successively lower frequencies (each level dilates the previous filters by 2)."""
    lo = _SYM2
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for i in range(1, 4):
        dilated = np.zeros((4, bank.shape[1] * 2 - 1))
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in dilated])
        start = (bank.shape[1] - hi2.size) // 2
        bank[i, start:start + hi2.size] += hi2
    return bank.astype(np.float32)


def apply_imgfilter(images: jax.Array, gains: jax.Array) -> jax.Array:
    """Amplifies the 4 frequency bands of `images [N, H, W, C]` by `gains [N, 4]`: the separable
    filter h = gains @ bank, applied along x then y (correlation) on the reflect-padded image."""
    n, h, w, c = images.shape
    taps = _matmul(gains, jnp.asarray(_filter_bank()))               # [N, K]
    half = taps.shape[1] // 2
    x = jnp.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode="reflect")
    # One depthwise convolution over the batch folded into channels: [1, H, W, N * C].
    x = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h + 2 * half, w + 2 * half, n * c)
    kernel = jnp.repeat(taps, c, axis=0).T                           # [K, N * C]

    def correlate(z: jax.Array, rhs: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            z, rhs, window_strides=(1, 1), padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=n * c,
            precision=jax.lax.Precision.HIGHEST)

    x = correlate(x, kernel[None, :, None, :])                       # along x
    x = correlate(x, kernel[:, None, None, :])                       # along y
    return jnp.transpose(x.reshape(h, w, n, c), (2, 0, 1, 3))


def apply_noise(images: jax.Array, sigma: jax.Array, field: jax.Array) -> jax.Array:
    """Adds Gaussian noise: `images + sigma[N] · field[N, H, W, C]`."""
    return images + field * sigma[:, None, None, None]


def apply_cutout(images: jax.Array, size: jax.Array, center: jax.Array) -> jax.Array:
    """Zeroes a square of side `size [N]` (fraction of the image) centred at `center [N, 2]`
    (x, y in [0, 1]): pixels whose centre is closer than size/2 to it on both axes."""
    _, h, w, _ = images.shape
    px = (jnp.arange(w) + 0.5) / w
    py = (jnp.arange(h) + 0.5) / h
    keep_x = jnp.abs(px[None, :] - center[:, 0, None]) >= size[:, None] / 2   # [N, W]
    keep_y = jnp.abs(py[None, :] - center[:, 1, None]) >= size[:, None] / 2   # [N, H]
    keep = keep_x[:, None, :] | keep_y[:, :, None]
    return images * keep[..., None].astype(images.dtype)


# ---------------------------------------------------------------------------------------------
# The pipeline.


def apply_params(images: jax.Array, params: Mapping[str, jax.Array],
                 skip_identity: bool = True) -> jax.Array:
    """Applies resolved parameters to `images [N, H, W, C]` in the official order: geometric,
    colour, image-space filter, noise, cutout.

    With `skip_identity`, the geometric resampling is skipped (`lax.cond`) when no sample of
    the batch is transformed; the official resamples anyway, which changes pixels by ~1e-6.
    """
    dtype = images.dtype
    x = images.astype(jnp.float32)
    n, h, w, c = x.shape
    geometric = {k: params[k] for k in GEOMETRIC if k in params}
    if geometric:
        g_inv = geometric_matrix(geometric, h, w)
        if skip_identity:
            identity = jnp.all(g_inv == jnp.eye(3, dtype=jnp.float32))
            x = jax.lax.cond(identity, lambda z, _: z, apply_geometric, x, g_inv)
        else:
            x = apply_geometric(x, g_inv)
    color = {k: params[k] for k in COLOR if k in params}
    if color:
        x = apply_color(x, color_matrix(color))
    if "imgfilter" in params:
        x = apply_imgfilter(x, params["imgfilter"])
    if "noise" in params:
        x = apply_noise(x, params["noise"], params["noise_field"])
    if "cutout_size" in params:
        x = apply_cutout(x, params["cutout_size"], params["cutout_center"])
    return x.astype(dtype)


@functools.partial(jax.jit, static_argnames=("config", "skip_identity"))
def augment_with_draws(images: jax.Array, draws: Mapping[str, Mapping[str, jax.Array]],
                       p: jax.Array | float, config: AugmentConfig,
                       skip_identity: bool = True) -> jax.Array:
    """`apply_params(images, resolve_params(draws, p, config))`, jitted (`config` static)."""
    return apply_params(images, resolve_params(draws, p, config), skip_identity)


@functools.partial(jax.jit, static_argnames=("config",))
def augment(images: jax.Array, key: jax.Array, p: jax.Array | float,
            config: AugmentConfig) -> jax.Array:
    """Augments a batch with probability `p`, each sample independently.

    Args:
      images: `[N, H, W, C]` float, in [-1, 1]; C = 3 or 1 when colour transforms are on.
      key: PRNG key.
      p: augmentation probability, a scalar; traced, so a new p never recompiles.
      config: the pipeline (a static argument; `augment` is jitted, and inlined when called
        inside another jitted function).

    Returns:
      `[N, H, W, C]`, same dtype; differentiable with respect to `images`.
    """
    if images.ndim != 4:
        raise ValueError(f"augment expects NHWC images, got shape {images.shape}")
    draws = sample_draws(key, images.shape, config)
    return augment_with_draws(images, draws, p, config)


def make_augment_fn(pipe: str = "bgc", **overrides
                    ) -> Callable[[jax.Array, jax.Array, jax.Array | float], jax.Array]:
    """`(images, key, p) -> augment(images, key, p, AugmentConfig.preset(pipe, **overrides))`.

    Args:
      pipe: official `--augpipe` name ('blit', 'geom', 'color', 'filter', 'noise', 'cutout',
        'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'); the official default is 'bgc'.
      **overrides: `AugmentConfig` fields, e.g. `xint_max=0.25`.
    """
    return functools.partial(augment, config=AugmentConfig.preset(pipe, **overrides))


# ---------------------------------------------------------------------------------------------
# Adaptive p (paper sec. 3; official training loop).


def real_sign_stats(real_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(Σ sign(D(x)), count)` of a batch of real logits, to accumulate between ADA updates.

    The official accumulates the signs of every real-image logit that D computes in the
    interval (its main phase and its R1 phase), summed over all devices.
    """
    return jnp.sum(jnp.sign(real_logits)), jnp.asarray(real_logits.size, jnp.float32)


def ada_update(p: jax.Array | float, sign_sum: jax.Array | float, count: jax.Array | float,
               batch_size: int, interval: int = 4, target: float | None = 0.6,
               ada_kimg: float = 500.0) -> tuple[jax.Array, jax.Array]:
    """One ADA adjustment, made every `interval` steps.

    r_t = E[sign(D(x_real))] over the interval;
    p <- max(p + sign(r_t - target) · batch_size · interval / (ada_kimg · 1000), 0),
    so p can move by 1 in `ada_kimg` thousand images (p has no upper clamp, as the official).

    Args:
      p: current probability (scalar).
      sign_sum, count: accumulated `real_sign_stats` since the last adjustment.
      batch_size: images per step over all devices.
      interval: steps between adjustments (official 4).
      target: r_t target (official 0.6); None = fixed p (p returned unchanged).
      ada_kimg: speed (official 500; train.py uses 100 when resuming from a snapshot).

    Returns:
      `(p_new, r_t)`, float32 scalars; with `count == 0`, r_t is NaN and p is unchanged.
    """
    p = jnp.asarray(p, jnp.float32)
    count = jnp.asarray(count, jnp.float32)
    r_t = jnp.where(count > 0, jnp.asarray(sign_sum, jnp.float32) / jnp.maximum(count, 1), jnp.nan)
    if target is None:
        return p, r_t
    adjust = jnp.sign(r_t - target) * (batch_size * interval) / (ada_kimg * 1000)
    p_new = jnp.maximum(p + adjust, 0.0)
    return jnp.where(count > 0, p_new, p), r_t
