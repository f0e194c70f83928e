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
    "conv_weight_gradient",
    "modulated_conv2d",
    "transposed_conv2d",
    "upsampling_conv2d",
]


# Convolution gradients on XLA CPU. XLA lowers a weight gradient (`dL/dw`) to a convolution
# whose "kernel" is the whole output-gradient image, which XLA CPU runs 8-16x slower than
# the forward pass at 128-256 px (2-core x86: 3x3, 64 ch, 4 x 256^2: forward 0.20 s, weight
# gradient 4.6 s; torch/oneDNN 0.28 s), and a strided layer's input gradient to a correlation
# of the zero-stuffed output gradient. Second derivatives (R1, path length) are made of both.
# Here the weight gradient is an im2col product over blocks of output rows (each block's
# patches stay in cache and feed one GEMM: about the forward pass's cost), a stride-1
# layer's input gradient is a stride-1 convolution taking the same rule and a strided
# layer's the transposed convolution of the output gradient (`transposed_conv2d`, whose own
# input gradient is the strided convolution again), so the second derivatives take them too
# (paper256 widths at 64^2, 4 images per device: path-length phase 35.1 -> 6.5 s, R1 phase
# 33.2 -> 7.3 s; paper256 training 1.56x the official code's speed: `benchmarks/RESULTS.md`).
_PATCH_BLOCK_BYTES = 4 << 20
# Below this many multiply-adds (x2) per layer XLA's own gradients are as fast and compile to
# less (the test suite's networks). Measured, whole training phases on 2 host devices: the
# `smoke` config's 32^2 x 32-channel layers (1.5e8) slower blocked (0.142 vs 0.124 s per
# iteration), the 128-channel cifar preset's 16^2 and 32^2 layers (6e8, 2.4e9) faster (R1
# 0.87 -> 0.63 s per call).
_MIN_BLOCKED_FLOPS = 5e8


def _lax_conv(x: jax.Array, w: jax.Array, stride: int, padding: tuple[int, int],
              groups: int = 1) -> jax.Array:
    py, px = padding
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=[(py, py), (px, px)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _block_rows(out_h: int, row_bytes: int) -> int:
    """The largest divisor of `out_h` whose block of patch rows fits `_PATCH_BLOCK_BYTES`."""
    fits = max(1, _PATCH_BLOCK_BYTES // max(row_bytes, 1))
    return max(d for d in range(1, min(out_h, fits) + 1) if out_h % d == 0)


def conv_weight_gradient(x: jax.Array, dy: jax.Array, kernel: tuple[int, int], stride: int,
                         padding: tuple[int, int]) -> jax.Array:
    """`dL/dw` of `y = conv(x, w)` (NHWC / HWIO, `groups = 1`) as blocked im2col GEMMs.

    dw[i, j, c, o] = sum_{n, h, w} x_pad[n, s*h + i, s*w + j, c] * dy[n, h, w, o]: per block of
    output rows, the `kh * kw` shifted (strided) views of `x_pad` side by side along channels
    ([N * rows * W', kh * kw * C]) times `dy`'s rows ([N * rows * W', O]), summed over blocks.

    Args:
      x: `[N, H, W, C]` forward input.
      dy: `[N, H', W', O]` gradient of the output.
      kernel: `(kh, kw)`.
      stride: the forward stride.
      padding: `(py, px)`, non-negative, on both sides (as the forward).

    Returns:
      `[kh, kw, C, O]`, float32 accumulation cast to `x`'s dtype.
    """
    (kh, kw), (py, px) = kernel, padding
    batch, _, _, channels = x.shape
    _, out_h, out_w, out_channels = dy.shape
    x = jnp.pad(x, [(0, 0), (py, py), (px, px), (0, 0)])
    rows = _block_rows(out_h, batch * out_w * kh * kw * channels * x.dtype.itemsize)
    in_rows = (rows - 1) * stride + kh

    def block_product(block):
        xb = jax.lax.dynamic_slice_in_dim(x, block * rows * stride, in_rows, axis=1)
        dyb = jax.lax.dynamic_slice_in_dim(dy, block * rows, rows, axis=1)
        patches = jnp.concatenate(
            [xb[:, i:i + (rows - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride]
             for i in range(kh) for j in range(kw)], axis=-1)
        return jax.lax.dot_general(
            patches.reshape(-1, kh * kw * channels), dyb.reshape(-1, out_channels),
            (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    # The first block starts the sum (a zeros carry would lack the inputs' varying mesh axes
    # inside `shard_map`).
    total = jax.lax.fori_loop(1, out_h // rows, lambda block, t: t + block_product(block),
                              block_product(0))
    return total.reshape(kh, kw, channels, out_channels).astype(x.dtype)


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_blocked_grad(x: jax.Array, w: jax.Array, stride: int,
                       padding: tuple[int, int]) -> jax.Array:
    """`_lax_conv` whose weight gradient is `conv_weight_gradient` and whose input gradient is
    a stride-1 `_conv_blocked_grad` again (`transposed_conv2d` for strided layers)."""
    return _lax_conv(x, w, stride, padding)


def _conv_blocked_grad_fwd(x, w, stride, padding):
    return _lax_conv(x, w, stride, padding), (x, w)


def _conv_blocked_grad_bwd(stride, padding, residuals, dy):
    x, w = residuals
    kh, kw = w.shape[:2]
    py, px = padding
    if stride == 1 and py <= kh - 1 and px <= kw - 1:
        # dx = dy correlated with the flipped, transposed kernel: the same operation again,
        # so a second derivative (R1, path length) also takes the blocked weight gradient.
        dx = _conv_blocked_grad(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3), 1,
                                (kh - 1 - py, kw - 1 - px))
    elif stride > 1:
        # The transposed convolution of `dy` (scattered with the same taps): no products with
        # stuffed zeros, and its own derivatives come back here.
        dx = _strided_conv_input_gradient(dy, w, stride, padding, x.shape[1:3])
    else:
        dx = jax.vjp(lambda x_: _lax_conv(x_, w, stride, padding), x)[1](dy)[0]
    dw = conv_weight_gradient(x, dy, (kh, kw), stride, padding)
    return dx, dw.astype(w.dtype)


_conv_blocked_grad.defvjp(_conv_blocked_grad_fwd, _conv_blocked_grad_bwd)


def _conv_flops(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], out_hw: tuple[int, int]
                ) -> int:
    """Multiply-adds x 2 of a convolution: batch x output pixels x kernel taps x C_in x C_out."""
    return 2 * x_shape[0] * out_hw[0] * out_hw[1] * int(np.prod(kernel_shape))


def _weight_gradient(x: jax.Array, dy: jax.Array, w: jax.Array, stride: int,
                     padding: tuple[int, int]) -> jax.Array:
    """`dL/dw` of `y = _lax_conv(x, w, stride, padding)`: `conv_weight_gradient` for layers
    of at least `_MIN_BLOCKED_FLOPS`, XLA's own below (as fast there, and less to compile)."""
    if _conv_flops(x.shape, w.shape, dy.shape[1:3]) >= _MIN_BLOCKED_FLOPS:
        return conv_weight_gradient(x, dy, w.shape[:2], stride, padding).astype(w.dtype)
    return jax.vjp(lambda w_: _lax_conv(x, w_, stride, padding), w)[1](dy)[0]


def _transposed_conv_value(x: jax.Array, v: jax.Array, up: int) -> jax.Array:
    """`transposed_conv2d`'s value: one GEMM of the input pixels with every tap's weights
    ([N*H*W, C] x [C, kh*kw*O]), then per output phase `(ry, rx)` the sum of its taps
    `(up*a + ry, up*b + rx)`, each shifted by `(a, b)` input pixels, and the phases interleaved
    (depth-to-space): `kh * kw` multiply-adds per input pixel and channel pair, as a
    scatter, with contiguous shifts only."""
    batch, height, width, channels = x.shape
    kh, kw, _, out_channels = v.shape
    cols = jax.lax.dot_general(
        x.reshape(-1, channels), v.transpose(2, 0, 1, 3).reshape(channels, -1),
        (((1,), (0,)), ((), ()))).reshape(batch, height, width, kh, kw, out_channels)
    taps_y, taps_x = -(-kh // up), -(-kw // up)
    rows, cols_out = height + taps_y - 1, width + taps_x - 1  # per phase
    phases = []
    for ry in range(up):
        row = []
        for rx in range(up):
            total = jnp.zeros((batch, rows, cols_out, out_channels), x.dtype)
            for a in range(taps_y):
                for b in range(taps_x):
                    if up * a + ry < kh and up * b + rx < kw:
                        total = total + jnp.pad(
                            cols[:, :, :, up * a + ry, up * b + rx],
                            [(0, 0), (a, rows - height - a), (b, cols_out - width - b), (0, 0)])
            row.append(total)
        phases.append(jnp.stack(row, axis=3))  # [N, rows, cols, rx, O]
    y = jnp.stack(phases, axis=2).reshape(batch, up * rows, up * cols_out, out_channels)
    return y[:, :up * (height - 1) + kh, :up * (width - 1) + kw]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _transposed_conv(x: jax.Array, v: jax.Array, up: int) -> jax.Array:
    """`transposed_conv2d` (ungrouped, unpadded); its input gradient is the stride-`up`
    correlation of `dy` with the same taps (`conv2d`, whose input gradient comes back here)
    and its weight gradient `_weight_gradient` of that correlation."""
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
    channel pair (the sub-pixel form takes `ceil(k / up)**2 * up**2`, 16 for 3x3 at up 2).
    Its input gradient is the stride-`up` convolution of the output gradient, its weight
    gradient that convolution's; derivatives of any order keep these forms.

    Args:
      x: `[N, H, W, C]`.
      v: `[kh, kw, C, O]`, the scatter (not flipped) kernel.
      up: integer stride >= 1.

    Returns:
      `[N, up * (H - 1) + kh, up * (W - 1) + kw, O]`.
    """
    v = v.astype(x.dtype)
    x, v = _same_varying_axes(x, v)
    return _transposed_conv(x, v, up)


def _strided_conv_input_gradient(dy: jax.Array, w: jax.Array, stride: int,
                                 padding: tuple[int, int], in_hw: tuple[int, int]
                                 ) -> jax.Array:
    """`dL/dx` of `y = _lax_conv(x, w, stride, padding)` for `x` of spatial size `in_hw`: the
    transposed convolution of `dy`, less the padding (rows and columns the strided form never
    reads get zero)."""
    full = transposed_conv2d(dy, w.swapaxes(2, 3), stride)  # the padded input's gradient
    (py, px), (height, width) = padding, in_hw
    config = [(0, 0, 0), (-py, height + py - full.shape[1], 0),
              (-px, width + px - full.shape[2], 0), (0, 0, 0)]
    return jax.lax.pad(full, jnp.zeros((), full.dtype), config)
# Jitted so that an eager (op-by-op) call re-uses its trace; inlined under an outer `jit`.
_conv_blocked_grad_jit = xla_cpu.jit(_conv_blocked_grad, static_argnums=(2, 3))


def conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> jax.Array:
    """Cross-correlation of NHWC `x` with HWIO `w`; `padding = (py, px)` on both sides.

    Equal to `lax.conv_general_dilated` in value and gradients; when JAX's default backend is
    the CPU, large ungrouped layers take their weight gradient from `conv_weight_gradient`
    and their input gradient from stride-1 convolutions (see the note above
    `_PATCH_BLOCK_BYTES`); accelerators keep their own convolution gradients.
    """
    w = w.astype(x.dtype)
    out_h = (x.shape[1] + 2 * padding[0] - w.shape[0]) // stride + 1
    out_w = (x.shape[2] + 2 * padding[1] - w.shape[1]) // stride + 1
    if (groups == 1 and min(padding) >= 0 and jax.default_backend() == "cpu"
            and _conv_flops(x.shape, w.shape, (out_h, out_w)) >= _MIN_BLOCKED_FLOPS):
        # Inside `shard_map`, replicated weights meet per-device activations: mark them
        # per-device here (as XLA's own rule does implicitly) so that the custom gradient is
        # per-device and JAX sums it over the mesh, as for any replicated parameter.
        x, w = _same_varying_axes(x, w)
        return _conv_blocked_grad_jit(x, w, stride, tuple(padding))
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
        # On the CPU the scatter form is cheaper still (9 multiply-adds for 3x3 at up 2, and
        # a GEMM, which XLA CPU runs faster than its convolutions); it is the full transposed
        # convolution of the flipped kernel, cropped to the padding asked for.
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
