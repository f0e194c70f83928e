"""upfirdn2d as polyphase sums of shifted slices (NHWC), fast on XLA CPU and GPU.

Same semantics as `flaxgan.nn.fir.upfirdn2d`, computed without the zero-stuffed signal and
without XLA's grouped (depthwise) dilated or strided convolutions, which XLA CPU runs one
channel at a time and very slowly (~8 s for one StyleGAN3-T 256 layer of one image):

- upsampling by u: output phase r of every axis is a short FIR (about K/u taps) of the
  undilated input, y[u·j + r] = Σ_s g[u·s + r + q] · x[j - s]; the u phases are then
  interleaved by a stack and a reshape (depth to space);
- downsampling by d: only the kept samples are computed, y[m] = Σ_k g[k] · x[d·m + k + start],
  a sum of strided slices;
- separable (1-D) filters run as one pass per axis, 2-D (e.g. radial) filters as one 2-D pass.

Every term is a slice of the padded input times a scalar tap, so XLA fuses a whole pass into
one elementwise loop. The two resamplers are each other's transposes; they are linear, so each
one's VJP is the other (no residuals), which also avoids the pads that autodiff of slices gives.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.nn.fir import (
    Padding,
    downsample2d_padding,
    filter2d_padding,
    parse_padding,
    upsample2d_padding,
)

__all__ = ["upfirdn2d", "filter2d", "upsample2d", "downsample2d"]


@dataclasses.dataclass(frozen=True)
class Resample:
    """A static linear resampler along `axes` of an array (hashable: the taps are a tuple).

    `up`: y[t] = Σ_i g[t + offset - factor·i] · x[i]  (zero insertion, then filtering);
    else: y[m] = Σ_k g[k] · x[factor·m + k + offset]   (filtering, then decimation);
    vector indices over `axes`, x zero outside `[0, in_lens)`, t and m in `[0, out_lens)`,
    g zero outside its shape. The two forms are each other's transposes (`transpose`).
    """

    up: bool
    taps: tuple  # nested tuple of floats, one level per axis
    factor: int
    offsets: tuple[int, ...]
    in_lens: tuple[int, ...]
    out_lens: tuple[int, ...]
    axes: tuple[int, ...]  # ascending

    def transpose(self) -> Resample:
        return Resample(not self.up, self.taps, self.factor, tuple(-o for o in self.offsets),
                        self.out_lens, self.in_lens, self.axes)


def _pad(x: jax.Array, axes: tuple[int, ...], pads: list[tuple[int, int]]) -> jax.Array:
    widths = [(0, 0)] * x.ndim
    for axis, pad in zip(axes, pads, strict=True):
        widths[axis] = pad
    return jnp.pad(x, widths) if any(lo or hi for lo, hi in pads) else x


def _slice(x: jax.Array, axes: tuple[int, ...], starts, sizes, step: int = 1) -> jax.Array:
    start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
    for axis, s, n in zip(axes, starts, sizes, strict=True):
        start[axis], limit[axis], strides[axis] = s, s + (n - 1) * step + 1, step
    return jax.lax.slice(x, start, limit, strides)


def _weighted_sum(terms: list[tuple[float, jax.Array]], shape, dtype) -> jax.Array:
    """Σ tap · slice, skipping zero taps (XLA fuses the sum into one loop)."""
    terms = [(tap, t) for tap, t in terms if tap != 0.0]
    if not terms:
        return jnp.zeros(shape, dtype)
    return functools.reduce(lambda acc, term: acc + term[0] * term[1], terms[1:],
                            terms[0][0] * terms[0][1])


def _interleave(phases: dict[tuple[int, ...], jax.Array], axes: tuple[int, ...],
                factor: int) -> jax.Array:
    """Depth to space: `phases[r]` holds samples `factor·j + r` (r, j vectors over `axes`)."""
    if not axes:
        return phases[()]
    axis, merged = axes[-1], {}
    for prefix in {r[:-1] for r in phases}:
        y = jnp.stack([phases[(*prefix, r)] for r in range(factor)], axis=axis + 1)
        merged[prefix] = y.reshape(*y.shape[:axis], -1, *y.shape[axis + 2:])
    return _interleave(merged, axes[:-1], factor)


def _run_up(x: jax.Array, spec: Resample) -> jax.Array:
    """Phase r of the output, r in [0, u)^n: y_r[j] = Σ_s g[u·s + r + q] x[j - s]."""
    g, u = np.asarray(spec.taps, np.float64), spec.factor
    counts = [-(-n // u) for n in spec.out_lens]  # samples per phase (the last ones cropped)
    # Shifts s used by any phase: 0 <= u·s + r + q < K for some r in [0, u).
    s_lo = [-((u - 1 + q) // u) for q in spec.offsets]
    s_hi = [(k - 1 - q) // u for k, q in zip(g.shape, spec.offsets, strict=True)]
    pads = [(max(0, hi), max(0, j - 1 - lo - (n - 1)))
            for lo, hi, j, n in zip(s_lo, s_hi, counts, spec.in_lens, strict=True)]
    xp = _pad(x, spec.axes, pads)
    phase_shape = list(x.shape)
    for axis, j in zip(spec.axes, counts, strict=True):
        phase_shape[axis] = j
    phases = {}
    for r in itertools.product(range(u), repeat=len(spec.axes)):
        terms = []
        for s in itertools.product(*(range(lo, hi + 1) for lo, hi in zip(s_lo, s_hi,
                                                                           strict=True))):
            k = tuple(u * si + ri + q for si, ri, q in zip(s, r, spec.offsets, strict=True))
            if all(0 <= ki < kn for ki, kn in zip(k, g.shape, strict=True)):
                starts = [p[0] - si for p, si in zip(pads, s, strict=True)]
                terms.append((float(g[k]), _slice(xp, spec.axes, starts, counts)))
        phases[r] = _weighted_sum(terms, phase_shape, x.dtype)
    y = _interleave(phases, spec.axes, u)
    return _slice(y, spec.axes, [0] * len(spec.axes), spec.out_lens)


def _run_down(x: jax.Array, spec: Resample) -> jax.Array:
    """y[m] = Σ_k g[k] x[d·m + k + start]: only the kept samples, as strided slices.

    The sum runs on two halves of an axis the pass does not filter, then concatenated: else
    XLA fuses this pass into the next pass that reads it (the other axis of a separable
    filter, or a VJP's pass) and recomputes every sample once per tap of that pass (K times
    the work: ~3x slower at K = 12); XLA does not fuse through a concatenation (and drops
    `optimization_barrier` before fusion on CPU).
    """
    g, d = np.asarray(spec.taps, np.float64), spec.factor
    pads = [(max(0, -start), max(0, d * (m - 1) + k - 1 + start - (n - 1)))
            for start, m, k, n in zip(spec.offsets, spec.out_lens, g.shape, spec.in_lens,
                                      strict=True)]
    xp = _pad(x, spec.axes, pads)
    starts = [start + lo for start, (lo, _) in zip(spec.offsets, pads, strict=True)]

    def down_sum(xp: jax.Array) -> jax.Array:
        out_shape = list(xp.shape)
        for axis, m in zip(spec.axes, spec.out_lens, strict=True):
            out_shape[axis] = m
        terms = []
        for k in itertools.product(*(range(n) for n in g.shape)):
            ks = [ki + s for ki, s in zip(k, starts, strict=True)]
            terms.append((float(g[k]), _slice(xp, spec.axes, ks, spec.out_lens, d)))
        return _weighted_sum(terms, out_shape, x.dtype)

    free = [a for a in (1, 2, 0, 3) if a < x.ndim and a not in spec.axes and x.shape[a] > 1]
    if not free:
        return down_sum(xp)
    axis, half = free[0], x.shape[free[0]] // 2
    return jnp.concatenate([down_sum(jax.lax.slice_in_dim(xp, 0, half, axis=axis)),
                            down_sum(jax.lax.slice_in_dim(xp, half, None, axis=axis))],
                           axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def resample(x: jax.Array, spec: Resample) -> jax.Array:
    """Applies the linear map `spec` to `x` (its VJP is the transposed map)."""
    if tuple(x.shape[a] for a in spec.axes) != spec.in_lens:
        raise ValueError(f"resample: expected lengths {spec.in_lens} along {spec.axes}, "
                         f"got shape {x.shape}")
    return _run_up(x, spec) if spec.up else _run_down(x, spec)


def _resample_fwd(x, spec):
    return resample(x, spec), None


def _resample_bwd(spec, _, cotangent):
    return (resample(cotangent, spec.transpose()),)


resample.defvjp(_resample_fwd, _resample_bwd)


def _to_tuple(f: np.ndarray) -> tuple:
    return tuple(_to_tuple(row) for row in f) if f.ndim > 1 else tuple(float(v) for v in f)


def _pass(x: jax.Array, f: np.ndarray, axes: tuple[int, ...], pads: list[tuple[int, int]],
          up: int, down: int, flip_filter: bool) -> jax.Array:
    """upfirdn along `axes` with the filter `f` (one dimension per axis, convolution taps)."""
    lens = tuple(x.shape[a] for a in axes)
    ks = f.shape
    if up > 1:
        # Correlating the padded zero-stuffed signal with flip(f): z[t] = Σ_i f[t + K-1-p0 - u·i]
        # x[i], i.e. the up form with g = f (g = flip(f) for flip_filter) and q = K - 1 - p0.
        g = np.flip(f) if flip_filter else f
        out = tuple(n * up + lo + hi - k + 1 for n, (lo, hi), k in zip(lens, pads, ks,
                                                                        strict=True))
        offsets = tuple(k - 1 - lo for k, (lo, _) in zip(ks, pads, strict=True))
        _check_lengths(out)
        x = resample(x, Resample(True, _to_tuple(g), up, offsets, lens, out, axes))
        if down > 1:  # keep every down-th sample of the filtered signal
            kept = tuple((n - 1) // down + 1 for n in out)
            one = np.ones([1] * len(axes))
            x = resample(x, Resample(False, _to_tuple(one), down, (0,) * len(axes), out, kept,
                                     axes))
        return x
    # Correlation with flip(f) (with f for flip_filter) of the padded signal, every down-th
    # sample: y[m] = Σ_k g[k] x[d·m + k - p0].
    g = f if flip_filter else np.flip(f)
    out = tuple((n + lo + hi - k) // down + 1 for n, (lo, hi), k in zip(lens, pads, ks,
                                                                          strict=True))
    _check_lengths(out)
    offsets = tuple(-lo for lo, _ in pads)
    return resample(x, Resample(False, _to_tuple(g), down, offsets, lens, out, axes))


def _check_lengths(out: tuple[int, ...]) -> None:
    if min(out) < 1:
        raise ValueError(f"upfirdn2d: padding and filter leave an empty output ({out})")


def upfirdn2d(
    x: jax.Array,
    f: np.ndarray | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> jax.Array:
    """Upsample, pad, FIR-filter and downsample a batch of images (see `fir.upfirdn2d`).

    Args:
      x: `[N, H, W, C]`.
      f: `[KH, KW]` or separable taps `[K]` (from `setup_filter`), or None (identity).
      up, down: integer factors.
      padding: of the upsampled image, `int`, `[x, y]` or `[x0, x1, y0, y1]`; negative crops.
      flip_filter: False = convolution, True = correlation.
      gain: signal gain (`gain ** (f.ndim / 2)` per filter, as the official code).

    Returns:
      `[N, (H·up + py0 + py1 - KH) // down + 1, (W·up + px0 + px1 - KW) // down + 1, C]`.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects NHWC input, got shape {x.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    f = np.ones([1, 1], np.float64) if f is None else np.asarray(f, np.float64)
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: filter must be 1-D (separable) or 2-D, got {f.shape}")
    px0, px1, py0, py1 = parse_padding(padding)
    f = f * gain ** (f.ndim / 2)
    if f.ndim == 2:
        return _pass(x, f, (1, 2), [(py0, py1), (px0, px1)], up, down, flip_filter)
    x = _pass(x, f, (2,), [(px0, px1)], up, down, flip_filter)
    return _pass(x, f, (1,), [(py0, py1)], up, down, flip_filter)


def filter2d(x: jax.Array, f: np.ndarray | None, padding: Padding = 0,
             flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    """`fir.filter2d` in the polyphase form: `[N, H, W, C]`, same size out."""
    return upfirdn2d(x, f, padding=filter2d_padding(f, padding), flip_filter=flip_filter,
                     gain=gain)


def upsample2d(x: jax.Array, f: np.ndarray | None, up: int = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    """`fir.upsample2d` in the polyphase form: `[N, H, W, C]` -> `[N, H·up, W·up, C]`."""
    return upfirdn2d(x, f, up=up, padding=upsample2d_padding(f, up, padding),
                     flip_filter=flip_filter, gain=gain * up * up)


def downsample2d(x: jax.Array, f: np.ndarray | None, down: int = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    """`fir.downsample2d` in the polyphase form: `[N, H, W, C]` -> `[N, H/down, W/down, C]`."""
    return upfirdn2d(x, f, down=down, padding=downsample2d_padding(f, down, padding),
                     flip_filter=flip_filter, gain=gain)
