"""Convolution with FIR up/down-sampling and StyleGAN2's modulated convolution, NHWC / HWIO.

Padding is applied once, with respect to the upsampled image, exactly as the official
`conv2d_resample`; each resampling case takes the cheapest equivalent route (e.g. upsampling
as a transposed convolution followed by the FIR filter).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.nn.fir import (
    Padding,
    downsample2d_padding,
    parse_padding,
    upsample2d_padding,
)
from flaxgan.nn.polyphase import upfirdn2d

__all__ = ["conv2d_resample", "modulated_conv2d", "upsampling_conv2d"]


def _conv(
    x: jax.Array,
    w: jax.Array,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> jax.Array:
    """Cross-correlation of NHWC `x` with HWIO `w`; `padding = (py, px)` on both sides."""
    py, px = padding
    return jax.lax.conv_general_dilated(
        x,
        w.astype(x.dtype),
        window_strides=(stride, stride),
        padding=[(py, py), (px, px)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _phase_taps(kernel: int, up: int, pad_lo: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """1-D sub-pixel decomposition of a correlation of the `up`-times zero-stuffed input.

    Output `y = up * m + r` only meets input samples at taps `k` with `(y + k - pad_lo)`
    divisible by `up`: `out_r[m] = sum_k x[m + d_k] w[k]`, `d_k = (r + k - pad_lo) / up`.
    Returns `d_min` over all phases and, per phase `r`, its `(k, d_k - d_min)` pairs.
    """
    taps = [[(k, (r + k - pad_lo) // up) for k in range(kernel) if (r + k - pad_lo) % up == 0]
            for r in range(up)]
    d_min = min(d for phase in taps for _, d in phase)
    return d_min, [[(k, d - d_min) for k, d in phase] for phase in taps]


def upsampling_conv2d(x: jax.Array, w: jax.Array, padding: tuple[int, int], groups: int,
                     up: int) -> jax.Array:
    """Correlation of the `up`-times zero-stuffed `x` (`lax.conv_general_dilated` with
    `lhs_dilation=up`) with HWIO `w`, `padding = (py, px)` on both sides of the stuffed
    image, without multiplying by the stuffed zeros: the `up**2` output phases are ordinary
    correlations of `x` with sub-kernels of `w` (taps `k` of one residue mod `up`), computed
    as one convolution with the phases stacked along the output channels, then interleaved
    (depth-to-space). A 3x3 kernel at `up = 2` becomes a 2x2 kernel with 4x the outputs: 16
    instead of 36 multiply-adds per input pixel and output channel (XLA's CPU convolution
    multiplies the stuffed zeros). Same sums as the stuffed form, in another order."""
    batch, height, width, _ = x.shape
    kh, kw, in_per_group, out_channels = w.shape
    out_h = (height - 1) * up + 1 + 2 * padding[0] - kh + 1
    out_w = (width - 1) * up + 1 + 2 * padding[1] - kw + 1
    dy_min, taps_y = _phase_taps(kh, up, padding[0])
    dx_min, taps_x = _phase_taps(kw, up, padding[1])
    size_y = 1 + max(j for phase in taps_y for _, j in phase)
    size_x = 1 + max(j for phase in taps_x for _, j in phase)
    # Stacked kernel [size_y, size_x, I/g, g * up * up * O/g] (group-major output channels).
    stacked = jnp.zeros((size_y, size_x, in_per_group, up, up, out_channels), w.dtype)
    for ry, phase_y in enumerate(taps_y):
        for rx, phase_x in enumerate(taps_x):
            for ky, jy in phase_y:
                for kx, jx in phase_x:
                    stacked = stacked.at[jy, jx, :, ry, rx].set(w[ky, kx])
    out_per_group = out_channels // groups
    stacked = stacked.reshape(size_y, size_x, in_per_group, up, up, groups, out_per_group)
    stacked = jnp.transpose(stacked, (0, 1, 2, 5, 3, 4, 6)).reshape(
        size_y, size_x, in_per_group, groups * up * up * out_per_group)
    # Phase outputs m = 0 .. ceil(out / up) - 1 read x[m + dy_min .. m + dy_min + size - 1].
    rows, cols = -(-out_h // up), -(-out_w // up)
    config = [(0, 0, 0), (-dy_min, rows + size_y - 1 - height + dy_min, 0),
              (-dx_min, cols + size_x - 1 - width + dx_min, 0), (0, 0, 0)]
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
    y = _conv(x, stacked, groups=groups)  # [N, rows, cols, g * up * up * O/g]
    y = y.reshape(batch, rows, cols, groups, up, up, out_per_group)
    y = jnp.transpose(y, (0, 1, 4, 2, 5, 3, 6)).reshape(batch, rows * up, cols * up,
                                                        out_channels)
    return y[:, :out_h, :out_w]


def conv2d_resample(
    x: jax.Array,
    w: jax.Array,
    f: np.ndarray | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> jax.Array:
    """2-D convolution with optional FIR up/down-sampling.

    Args:
      x: `[N, H, W, C_in]`.
      w: `[KH, KW, C_in // groups, C_out]`.
      f: FIR filter from `setup_filter` (used when up > 1 or down > 1).
      up: integer upsampling factor.
      down: integer downsampling factor.
      padding: padding with respect to the upsampled image (`int`, `[x, y]`, `[x0, x1, y0, y1]`).
      groups: number of channel groups.
      flip_weight: True = correlation (like `lax.conv`), False = true convolution.
      flip_filter: passed to `upfirdn2d`.

    Returns:
      `[N, H', W', C_out]`.
    """
    kh, kw = w.shape[0], w.shape[1]
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1, py0, py1 = upsample2d_padding(f, up, [px0, px1, py0, py1])
    if down > 1:
        px0, px1, py0, py1 = downsample2d_padding(f, down, [px0, px1, py0, py1])
    if not flip_weight:
        w = jnp.flip(w, axis=(0, 1))

    # 1x1 kernels commute with the FIR resampling: convolve at the lower resolution.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                         flip_filter=flip_filter)

    # Downsampling only: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups)

    # Upsampling: a transposed convolution, i.e. a correlation of the zero-stuffed input, in
    # its sub-pixel form; the official transposed-conv path flips the kernel once more, so the
    # orientation chosen by `flip_weight` above already holds. Then the FIR filter.
    if up > 1:
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = upsampling_conv2d(x, w, (kh - 1 - pyt, kw - 1 - pxt), groups, up)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling, symmetric non-negative padding: a plain convolution.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups)

    # General case.
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
    x = _conv(x, w, groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    noise: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: np.ndarray | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> jax.Array:
    """StyleGAN2 modulated convolution (Karras et al. 2020, eqs. 1-3).

    w'_ijk = s_i * w_ijk (modulation); w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + 1e-8)
    (demodulation).

    Args:
      x: `[N, H, W, I]`.
      weight: `[KH, KW, I, O]`.
      styles: `[N, I]` modulation coefficients.
      noise: optional array broadcastable to the output, added after demodulation.
      up, down, padding, resample_filter, flip_weight: as `conv2d_resample`.
      demodulate: apply weight demodulation.
      fused_modconv: one grouped convolution with per-sample weights (True), or scale the
        activations before and after a shared convolution (False). Equal results.

    Returns:
      `[N, H', W', O]`.
    """
    batch = x.shape[0]
    kh, kw, in_channels, out_channels = weight.shape
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must be [{batch}, {in_channels}], got {styles.shape}")

    # In reduced precision, pre-normalise so that the modulated weights cannot overflow.
    if x.dtype != jnp.float32 and demodulate:
        weight = weight * (
            (1 / np.sqrt(in_channels * kh * kw))
            / jnp.max(jnp.abs(weight), axis=(0, 1, 2), keepdims=True)
        )
        styles = styles / jnp.max(jnp.abs(styles), axis=1, keepdims=True)

    w = weight[None] * styles[:, None, None, :, None]  # [N, KH, KW, I, O]
    dcoefs = jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)) + 1e-8) if demodulate else None

    if not fused_modconv:
        x = x * styles.astype(x.dtype)[:, None, None, :]
        x = conv2d_resample(x, weight.astype(x.dtype), f=resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.astype(x.dtype)[:, None, None, :]
        if noise is not None:
            x = x + noise.astype(x.dtype)
        return x

    if demodulate:
        w = w * dcoefs[:, None, None, None, :]
    # Fold the batch into channel groups: input [1, H, W, N*I], kernel [KH, KW, I, N*O].
    _, height, width, _ = x.shape
    x = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, height, width, batch * in_channels)
    w = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, in_channels, batch * out_channels)
    x = conv2d_resample(x, w.astype(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, groups=batch, flip_weight=flip_weight)
    _, height, width, _ = x.shape
    x = jnp.transpose(x.reshape(height, width, batch, out_channels), (2, 0, 1, 3))
    if noise is not None:
        x = x + noise.astype(x.dtype)
    return x
