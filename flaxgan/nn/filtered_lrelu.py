"""StyleGAN3's filtered leaky ReLU: upsample -> bias/lrelu/clamp -> downsample (NHWC).

The nonlinearity is applied at a higher sampling rate between two low-pass FIR filters so
that it does not alias (Karras et al. 2021, sec. 3.2). `filtered_lrelu` fuses the steps for
XLA: the upsampling is a transposed (lhs-dilated) depthwise convolution, so the zero-stuffed
signal is never materialised, and the downsampling is a strided convolution, so only the kept
samples are computed. `filtered_lrelu_reference` is the plain composition, kept as the spec.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.nn.activation import bias_act
from flaxgan.nn.fir import Padding, parse_padding, upfirdn2d

__all__ = ["filtered_lrelu", "filtered_lrelu_reference"]

SQRT2 = float(np.sqrt(2))


def _check(x: jax.Array, up: int, down: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects NHWC input, got shape {x.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")


def filtered_lrelu_reference(
    x: jax.Array,
    fu: np.ndarray | None = None,
    fd: np.ndarray | None = None,
    b: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = SQRT2,
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> jax.Array:
    """Plain composition: bias, `upfirdn2d(fu, up, padding)`, lrelu·gain, clamp, `upfirdn2d(fd)`."""
    _check(x, up, down)
    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)


def _axis_filter(f: np.ndarray | None, axis: int) -> np.ndarray:
    """A filter as a 2-D kernel acting along one spatial axis (1-D taps) or both (2-D)."""
    if f is None:
        return np.ones([1, 1], np.float32)
    if f.ndim == 2:
        return f
    return f[:, None] if axis == 0 else f[None, :]


def _depthwise(x, kernel, strides=(1, 1), lhs_dilation=(1, 1), padding=((0, 0), (0, 0))):
    channels = x.shape[-1]
    rhs = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), x.dtype)
    return jax.lax.conv_general_dilated(
        x, rhs, window_strides=strides, padding=padding, lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def filtered_lrelu(
    x: jax.Array,
    fu: np.ndarray | None = None,
    fd: np.ndarray | None = None,
    b: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = SQRT2,
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> jax.Array:
    """Bias, upsample by `up` with `fu`, leaky ReLU (`slope`) times `gain`, clamp, and downsample
    by `down` with `fd`.

    Args:
      x: `[N, H, W, C]`.
      fu: upsampling filter (1-D separable taps or 2-D), None = identity.
      fd: downsampling filter (1-D separable taps or 2-D, e.g. radial), None = identity.
      b: bias `[C]`.
      up, down: integer factors.
      padding: padding of the upsampled signal, `[x0, x1, y0, y1]` (negative crops).
      gain, slope, clamp: of the nonlinearity (gain sqrt(2), slope 0.2; clamp None = off).
      flip_filter: correlate instead of convolve.

    Returns:
      `[N, (H·up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down, ..., C]`.
    """
    _check(x, up, down)
    px0, px1, py0, py1 = parse_padding(padding)
    x = bias_act(x, b)
    fu = None if fu is None else np.asarray(fu, np.float32)
    fd = None if fd is None else np.asarray(fd, np.float32)

    # Upsampling: zero insertion and edge padding become the lhs dilation and padding of the
    # convolution (XLA window padding may be negative, which crops). The dilated signal has
    # H·up - (up - 1) samples; the official layout has up - 1 trailing zeros: added to `hi`.
    pad_y, pad_x = (py0, py1 + up - 1), (px0, px1 + up - 1)
    if fu is None or fu.ndim == 2:
        passes = [(_axis_filter(fu, 0) * np.float32(up**2), (pad_y, pad_x), (up, up))]
    else:  # Separable: filter (and dilate, pad) one axis per pass, each with gain `up`.
        passes = [(_axis_filter(fu, 0) * np.float32(up), (pad_y, (0, 0)), (up, 1)),
                  (_axis_filter(fu, 1) * np.float32(up), ((0, 0), pad_x), (1, up))]
    for kernel, pads, dilation in passes:
        kernel = kernel if flip_filter else np.flip(kernel, axis=(0, 1))
        x = _depthwise(x, kernel, lhs_dilation=dilation, padding=pads)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
