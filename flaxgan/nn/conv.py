"""Convolution with FIR up/down-sampling and StyleGAN2's modulated convolution, NHWC / HWIO.

Padding is applied once, with respect to the upsampled image, exactly as the official
`conv2d_resample`; each resampling case takes the cheapest equivalent route (e.g. upsampling
as a transposed convolution followed by the FIR filter).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import xla_cpu
from flaxgan.nn.fir import (
    Padding,
    downsample2d_padding,
    parse_padding,
    upsample2d_padding,
)
from flaxgan.nn.polyphase import upfirdn2d

__all__ = [
    "conv2d",
    "conv2d_resample",
    "modulated_conv2d",
    "transposed_conv2d",
    "upsampling_conv2d",
]


# Convolution gradients on XLA CPU. XLA differentiates a strided convolution into a
# correlation of the zero-stuffed output gradient (stride**2 times the products, most of them
# by zeros), and a transposed convolution (upsampling) into a correlation of the zero-stuffed
# input; second derivatives (R1, path length) are made of both. On the CPU a strided layer's
# input gradient is therefore the transposed convolution of the output gradient, computed as
# a scatter (`transposed_conv2d`: a stride-1 convolution per output phase), whose own input
# gradient is the strided convolution again, so derivatives of any order keep these forms.
# Forward + gradients of one layer, 2-core x86 (`benchmarks/conv_grad.py`, two runs): the
# generator's upsampling layers 22-66x faster than XLA's autodiff and 1.3-2.2x torch/oneDNN,
# the discriminator's strided ones 1.4-2.2x XLA's autodiff (torch: 1.3x at 32^2 x 128, but
# 0.68-0.94x at 256^2 x 64). Weight gradients stay XLA's: with
# convolutions on XLA's own kernels (`flaxgan.xla_cpu`) they run as fast as torch's at every
# StyleGAN2 layer size measured, first and second order (`benchmarks/RESULTS.md`).


def _lax_conv(x: jax.Array, w: jax.Array, stride: int, padding: tuple[int, int],
              groups: int = 1) -> jax.Array:
    py, px = padding
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=[(py, py), (px, px)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _varying_axes(a: jax.Array) -> frozenset[str]:
    """The mesh axes `a` varies over inside `shard_map` (empty outside)."""
    aval = jax.typeof(a)
    manual = getattr(aval, "manual_axis_type", None)  # JAX 0.10; earlier releases: `vma`
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def _same_varying_axes(*arrays: jax.Array) -> list[jax.Array]:
    """`arrays`, each cast to vary over every mesh axis that any of them varies over."""
    vma = [_varying_axes(a) for a in arrays]
    axes = frozenset().union(*vma)
    return [jax.lax.pcast(a, tuple(sorted(axes - v)), to="varying") if axes - v else a
            for a, v in zip(arrays, vma, strict=True)]


def _weight_gradient(x: jax.Array, dy: jax.Array, w: jax.Array, stride: int,
                     padding: tuple[int, int]) -> jax.Array:
    """XLA's `dL/dw` of `y = _lax_conv(x, w, stride, padding)` (linear in `w`: only `w`'s
    shape, dtype and mesh axes matter)."""
    return jax.vjp(lambda w_: _lax_conv(x, w_, stride, padding), w)[1](dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _strided_conv(x: jax.Array, w: jax.Array, stride: int,
                  padding: tuple[int, int]) -> jax.Array:
    """`_lax_conv` (stride > 1) whose input gradient is `transposed_conv2d` of `dy`."""
    return _lax_conv(x, w, stride, padding)


def _strided_conv_fwd(x, w, stride, padding):
    return _lax_conv(x, w, stride, padding), (x, w)


def _strided_conv_bwd(stride, padding, residuals, dy):
    x, w = residuals
    # x_pad's gradient scatters dy with the same taps; crop the padding (rows and columns the
    # strided form never reads get zero).
    full = transposed_conv2d(dy, w.swapaxes(2, 3), stride)
    (py, px), (height, width) = padding, x.shape[1:3]
    config = [(0, 0, 0), (-py, height + py - full.shape[1], 0),
              (-px, width + px - full.shape[2], 0), (0, 0, 0)]
    dx = jax.lax.pad(full, jnp.zeros((), full.dtype), config)
    return dx, _weight_gradient(x, dy, w, stride, padding)


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)
# Jitted so that an eager (op-by-op) call re-uses its trace; inlined under an outer `jit`.
_strided_conv_jit = xla_cpu.jit(_strided_conv, static_argnums=(2, 3))


def _transposed_conv_value(x: jax.Array, v: jax.Array, up: int) -> jax.Array:
    """`transposed_conv2d`'s value, one output phase at a time: phase `(ry, rx)` (outputs
    `(up*m + ry, up*l + rx)`) is `sum_{a,b} x[m - a, l - b] v[up*a + ry, up*b + rx]`, a
    stride-1 correlation of `x` with just that phase's taps (flipped), padded to the common
    phase size; then the phases are interleaved (depth-to-space). `kh * kw` multiply-adds per
    input pixel and channel pair in all, as the scatter, and no `up`-times larger
    intermediates (2-core x86, [4, 128^2, 64 -> 64]: 75 ms, against 124 for one GEMM over all
    taps followed by shifted sums)."""
    batch, height, width, _ = x.shape
    kh, kw, _, out_channels = v.shape
    taps_y, taps_x = -(-kh // up), -(-kw // up)  # the most taps of any phase, per axis
    rows, cols = height + taps_y - 1, width + taps_x - 1  # outputs per phase, per axis
    phases = []
    for ry in range(up):
        row = []
        for rx in range(up):
            kernel = v[ry::up, rx::up][::-1, ::-1]  # [a', b'] = v[up*(ny-1-a') + ry, ...]
            ny, nx = kernel.shape[:2]
            if ny == 0 or nx == 0:  # a kernel smaller than the stride: no taps here
                row.append(jnp.zeros((batch, rows, cols, out_channels), x.dtype))
                continue
            row.append(jax.lax.conv_general_dilated(
                x, kernel, (1, 1), [(ny - 1, taps_y - 1), (nx - 1, taps_x - 1)],
                dimension_numbers=("NHWC", "HWIO", "NHWC")))
        phases.append(jnp.stack(row, axis=3))  # [N, rows, cols, rx, O]
    y = jnp.stack(phases, axis=2).reshape(batch, up * rows, up * cols, out_channels)
    return y[:, :up * (height - 1) + kh, :up * (width - 1) + kw]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _transposed_conv(x: jax.Array, v: jax.Array, up: int) -> jax.Array:
    """`transposed_conv2d`; its input gradient is the stride-`up` correlation of `dy` with
    the same taps (`conv2d`, whose input gradient comes back here), its weight gradient
    XLA's gradient of that correlation."""
    return _transposed_conv_value(x, v, up)


def _transposed_conv_fwd(x, v, up):
    return _transposed_conv_value(x, v, up), (x, v)


def _transposed_conv_bwd(up, residuals, dy):
    x, v = residuals
    dx = conv2d(dy, v.swapaxes(2, 3), stride=up)
    return dx, _weight_gradient(dy, x, v.swapaxes(2, 3), up, (0, 0)).swapaxes(2, 3)


_transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


def transposed_conv2d(x: jax.Array, v: jax.Array, up: int) -> jax.Array:
    """Transposed convolution (fractionally strided; torch's `conv_transpose2d`), NHWC.

    `y[n, up*i + a, up*j + b, o] += x[n, i, j, c] * v[a, b, c, o]`: each input pixel scatters
    its kernel-sized patch onto the `up`-times larger output. Equal to the correlation of the
    `up`-times zero-stuffed input with the flipped kernel, padded by `k - 1`
    (`upsampling_conv2d`), at the scatter's `kh * kw` multiply-adds per input pixel and
    channel pair (the sub-pixel form takes `ceil(k / up)**2 * up**2`, 16 for 3x3 at up 2;
    the stuffed correlation `k**2 * up**2`). Its input gradient is the stride-`up`
    convolution of the output gradient (`conv2d`); derivatives of any order keep these forms.

    Args:
      x: `[N, H, W, C]`.
      v: `[kh, kw, C, O]`, the scatter (not flipped) kernel.
      up: integer stride >= 1.

    Returns:
      `[N, up * (H - 1) + kh, up * (W - 1) + kw, O]`.
    """
    x, v = _same_varying_axes(x, v.astype(x.dtype))
    return _transposed_conv(x, v, up)


def conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> jax.Array:
    """Cross-correlation of NHWC `x` with HWIO `w`; `padding = (py, px)` on both sides.

    Equal to `lax.conv_general_dilated` in value and gradients; when JAX's default backend is
    the CPU, ungrouped strided layers take their input gradient from `transposed_conv2d` (see
    the note above `_lax_conv`); accelerators keep their own convolution gradients.
    """
    w = w.astype(x.dtype)
    if groups == 1 and stride > 1 and min(padding) >= 0 and jax.default_backend() == "cpu":
        # Inside `shard_map`, replicated weights meet per-device activations: mark them
        # per-device here (as XLA's own rule does implicitly) so that the custom gradient is
        # per-device and JAX sums it over the mesh, as for any replicated parameter.
        x, w = _same_varying_axes(x, w)
        return _strided_conv_jit(x, w, stride, tuple(padding))
    return _lax_conv(x, w, stride, tuple(padding), groups)


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
    crop_y, crop_x = kh - 1 - padding[0], kw - 1 - padding[1]
    if groups == 1 and min(crop_y, crop_x) >= 0 and jax.default_backend() == "cpu":
        # On the CPU the scatter form is cheaper still (9 multiply-adds for 3x3 at up 2, one
        # convolution per output phase with only that phase's taps); it is the full
        # transposed convolution of the flipped kernel, cropped to the padding asked for.
        y = transposed_conv2d(x, jnp.flip(w, (0, 1)), up)
        return y[:, crop_y:y.shape[1] - crop_y, crop_x:y.shape[2] - crop_x]
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
    y = conv2d(x, stacked, groups=groups)  # [N, rows, cols, g * up * up * O/g]
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
        return conv2d(x, w, groups=groups)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                         flip_filter=flip_filter)

    # Downsampling only: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return conv2d(x, w, stride=down, groups=groups)

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
        return conv2d(x, w, padding=(py0, px0), groups=groups)

    # General case.
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
    x = conv2d(x, w, groups=groups)
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

    # sum_ik (s_i w_ijk)^2 = sum_i s_i^2 (sum_k w_ijk^2): an [N, I] x [I, O] product instead of
    # a reduction over the [N, KH, KW, I, O] modulated weights (which only the fused path needs).
    dcoefs = None
    if demodulate:
        energy = jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1))  # [N, O]
        dcoefs = jax.lax.rsqrt(energy + 1e-8)

    if not fused_modconv:
        x = x * styles.astype(x.dtype)[:, None, None, :]
        x = conv2d_resample(x, weight.astype(x.dtype), f=resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.astype(x.dtype)[:, None, None, :]
        if noise is not None:
            x = x + noise.astype(x.dtype)
        return x

    w = weight[None] * styles[:, None, None, :, None]  # [N, KH, KW, I, O]
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
