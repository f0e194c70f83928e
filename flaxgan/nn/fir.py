"""FIR filtering with integer up/down-sampling (upfirdn2d), NHWC.

`upfirdn2d` upsamples by zero insertion, pads (negative padding crops), convolves with a
2-D (or separable 1-D) FIR filter and keeps every `down`-th pixel — the resampling primitive
of StyleGAN2/3. Filters are float32 numpy arrays built once by `setup_filter`; they are
compile-time constants, never parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "setup_filter",
    "parse_padding",
    "filter_size",
    "upfirdn2d",
    "filter2d",
    "upsample2d",
    "downsample2d",
    "filter2d_padding",
    "upsample2d_padding",
    "downsample2d_padding",
]

Padding = int | Sequence[int]


def setup_filter(
    f: Sequence[float] | np.ndarray | None,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> np.ndarray:
    """Builds a FIR filter for `upfirdn2d`.

    Args:
      f: taps `[K]`, a 2-D filter `[KH, KW]`, a scalar, or None (identity).
      normalize: scale so that the filter keeps the DC level (sum of taps = 1).
      flip_filter: flip the taps.
      gain: overall signal gain (applied as `gain ** (ndim / 2)` per filter).
      separable: return 1-D taps; default: only for 1-D filters of 8 taps or more.

    Returns:
      float32 array `[K]` (separable) or `[KH, KW]`.
    """
    f = np.asarray(1.0 if f is None else f, dtype=np.float32)
    if f.ndim not in (0, 1, 2) or f.size == 0:
        raise ValueError(f"FIR filter must be a scalar, 1-D or 2-D and non-empty, got {f.shape}")
    f = f.reshape(1) if f.ndim == 0 else f
    if separable is None:
        separable = f.ndim == 1 and f.size >= 8
    if f.ndim == 1 and not separable:
        f = np.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"cannot make a {'separable' if separable else '2-D'} filter of {f.shape}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = np.flip(f, axis=tuple(range(f.ndim)))
    return (f * np.float32(gain ** (f.ndim / 2))).astype(np.float32)


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Returns `(x0, x1, y0, y1)` from an int, `[x, y]` or `[x0, x1, y0, y1]`."""
    if isinstance(padding, int | np.integer):
        padding = [int(padding)] * 2
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding}")
    return tuple(padding)  # type: ignore[return-value]


def filter_size(f: np.ndarray | None) -> tuple[int, int]:
    """`(width, height)` of a filter; 1-D filters are square."""
    if f is None:
        return 1, 1
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def _depthwise_correlate(
    x: jax.Array,
    kernel: np.ndarray,
    strides: tuple[int, int],
    lhs_dilation: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
    """Correlates every channel of NHWC `x` with the 2-D `kernel [KH, KW]`.

    `lhs_dilation` inserts zeros between input samples without materialising them (a
    transposed convolution); `padding` may be negative, which crops.
    """
    channels = x.shape[-1]
    rhs = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), dtype=x.dtype)
    return jax.lax.conv_general_dilated(
        x,
        rhs,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


def upfirdn2d(
    x: jax.Array,
    f: np.ndarray | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> jax.Array:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
      x: `[N, H, W, C]`.
      f: filter from `setup_filter` (`[KH, KW]` or separable `[K]`), or None (identity).
      up: integer upsampling factor (zero insertion).
      down: integer downsampling factor (every `down`-th pixel of the filtered result).
      padding: padding of the upsampled image, `int`, `[x, y]` or `[x0, x1, y0, y1]`;
        negative values crop.
      flip_filter: False = convolution (the default of the official code), True = correlation.
      gain: signal gain.

    Returns:
      `[N, (H * up + py0 + py1 - KH + 1) // down, ..., C]`, dtype of `x`.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects NHWC input, got shape {x.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    f = np.ones([1, 1], np.float32) if f is None else np.asarray(f, np.float32)
    px0, px1, py0, py1 = parse_padding(padding)
    f = f * np.float32(gain ** (f.ndim / 2))
    if not flip_filter:
        f = np.flip(f, axis=tuple(range(f.ndim)))

    # Zero insertion is the convolution's lhs dilation; the dilated signal has H·up - (up - 1)
    # samples, the official layout up - 1 trailing zeros more, which join the high padding.
    pad_y, pad_x = (py0, py1 + up - 1), (px0, px1 + up - 1)
    if f.ndim == 2:
        return _depthwise_correlate(x, f, (down, down), (up, up), (pad_y, pad_x))
    x = _depthwise_correlate(x, f[None, :], (1, down), (1, up), ((0, 0), pad_x))
    return _depthwise_correlate(x, f[:, None], (down, 1), (up, 1), (pad_y, (0, 0)))


def filter2d(
    x: jax.Array, f: np.ndarray | None, padding: Padding = 0, flip_filter: bool = False,
    gain: float = 1.0,
) -> jax.Array:
    """FIR-filters `x [N, H, W, C]`, padded so that the output keeps its size."""
    return upfirdn2d(x, f, padding=filter2d_padding(f, padding), flip_filter=flip_filter,
                     gain=gain)


def filter2d_padding(f: np.ndarray | None, padding: Padding = 0) -> list[int]:
    """upfirdn2d padding `[x0, x1, y0, y1]` of `filter2d` (output = input size)."""
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]


def upsample2d_padding(f: np.ndarray | None, up: int, padding: Padding = 0) -> list[int]:
    """upfirdn2d padding `[x0, x1, y0, y1]` of `upsample2d`: the filter centred on the
    zero-stuffed signal so that the output is exactly `up` times the input size."""
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return [padx0 + (fw + up - 1) // 2, padx1 + (fw - up) // 2,
            pady0 + (fh + up - 1) // 2, pady1 + (fh - up) // 2]


def downsample2d_padding(f: np.ndarray | None, down: int, padding: Padding = 0) -> list[int]:
    """upfirdn2d padding `[x0, x1, y0, y1]` of `downsample2d` (output = input size / down)."""
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return [padx0 + (fw - down + 1) // 2, padx1 + (fw - down) // 2,
            pady0 + (fh - down + 1) // 2, pady1 + (fh - down) // 2]


def upsample2d(
    x: jax.Array, f: np.ndarray | None, up: int = 2, padding: Padding = 0,
    flip_filter: bool = False, gain: float = 1.0,
) -> jax.Array:
    """Upsamples `x [N, H, W, C]` by `up` -> `[N, H * up, W * up, C]` (keeps the DC level)."""
    return upfirdn2d(x, f, up=up, padding=upsample2d_padding(f, up, padding),
                     flip_filter=flip_filter, gain=gain * up * up)


def downsample2d(
    x: jax.Array, f: np.ndarray | None, down: int = 2, padding: Padding = 0,
    flip_filter: bool = False, gain: float = 1.0,
) -> jax.Array:
    """Downsamples `x [N, H, W, C]` by `down` -> `[N, H // down, W // down, C]`."""
    return upfirdn2d(x, f, down=down, padding=downsample2d_padding(f, down, padding),
                     flip_filter=flip_filter, gain=gain)
