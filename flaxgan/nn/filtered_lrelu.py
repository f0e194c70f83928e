"""StyleGAN3's filtered leaky ReLU: upsample -> bias/lrelu/clamp -> downsample (NHWC).

The nonlinearity is applied at a higher sampling rate between two low-pass FIR filters so
that it does not alias (Karras et al. 2021, sec. 3.2). Both resamplings are the polyphase
`flaxgan.nn.polyphase.upfirdn2d`: the upsampler computes each output phase from the undilated
input, the downsampler only the kept samples, separable filters one axis at a time and radial
(config R) ones as one 2-D pass, each a fused sum of shifted slices (the XLA depthwise
dilated / strided convolutions used before were ~10x slower on CPU and held more memory).
"""

from __future__ import annotations

import jax
import numpy as np

from flaxgan.nn.activation import bias_act
from flaxgan.nn.fir import Padding
from flaxgan.nn.polyphase import upfirdn2d

__all__ = ["filtered_lrelu"]

SQRT2 = float(np.sqrt(2))


def _check(x: jax.Array, up: int, down: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects NHWC input, got shape {x.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")


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
    # The bias is added at the low rate (as the official reference path does); only the
    # upsampled signal and the nonlinearity's output exist at the high rate.
    x = upfirdn2d(bias_act(x, b), fu, up=up, padding=padding, gain=up**2,
                  flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
