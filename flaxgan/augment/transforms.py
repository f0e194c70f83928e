"""ADA step 3: geometric, colour and image-space transforms applied with resolved parameters,
and the jitted pipeline `augment` (see `flaxgan.augment`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import xla_cpu
from flaxgan.augment.params import COLOR, GEOMETRIC, AugmentConfig, resolve_params, sample_draws
from flaxgan.nn import polyphase
from flaxgan.nn.fir import setup_filter

__all__ = ["geometric_matrix", "color_matrix", "apply_geometric", "apply_color",
           "apply_imgfilter", "apply_noise", "apply_cutout", "apply_params", "augment_with_draws",
           "augment", "make_augment_fn"]

# Low-pass decomposition filters of the Daubechies symlets (the PyWavelets `dec_lo` taps).
_SYM2 = np.array([-0.12940952255092145, 0.22414386804185735, 0.836516303737469,
                  0.48296291314469025])
_SYM6 = np.array([0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
                  -0.048311742585633, 0.4910559419267466, 0.787641141030194,
                  0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
                  0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])

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


@functools.partial(xla_cpu.jit, static_argnames=("config", "skip_identity"))
def augment_with_draws(images: jax.Array, draws: Mapping[str, Mapping[str, jax.Array]],
                       p: jax.Array | float, config: AugmentConfig,
                       skip_identity: bool = True) -> jax.Array:
    """`apply_params(images, resolve_params(draws, p, config))`, jitted (`config` static)."""
    return apply_params(images, resolve_params(draws, p, config), skip_identity)


@functools.partial(xla_cpu.jit, static_argnames=("config",))
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
