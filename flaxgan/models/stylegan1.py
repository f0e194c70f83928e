"""StyleGAN (Karras et al. 2019): `G_style` = `G_mapping` + `G_synthesis`, and `D_basic`.

Flax Linen, NHWC. Module names, constructor arguments and defaults mirror the official
TensorFlow build functions of NVlabs/stylegan (`training/networks_stylegan.py`), and every
variable sits at the path of its official variable name split on '/':

    G_synthesis/8x8/Conv0_up/weight  <->  variables['params']['G_synthesis']['8x8']['Conv0_up']
                                                      ['weight']

Trainable variables are in 'params', the official non-trainable ones (`lod`, `dlatent_avg`,
`noise<i>`) in 'buffers'. Layouts: conv kernels HWIO and dense weights `[in, out]` as in TF;
the NCHW constants `const` `[1, C, 4, 4]` and `noise<i>` `[1, 1, R, R]` are NHWC here
(`flaxgan.convert.tf_stylegan1` converts both ways).

Equalized learning rate: weights are stored with std `1 / lrmul` and scaled at run time by
`gain / sqrt(fan_in) * lrmul`; unlike StyleGAN2 the gain (sqrt(2) for relu/lrelu) multiplies the
weight, before the bias and the activation.

Progressive growing: `structure='linear'` blends the outputs of the resolution being faded in
with the upscaled (G) / downscaled (D) lower resolution by `lod` (level of detail: 0 = full
resolution, each unit halves it). The official `'recursive'` structure computes the same
values with `tf.cond` and `'auto'` means `'linear'` for building variables and `'recursive'`
for evaluation, so both evaluate as `'linear'` here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from flaxgan.errors import InvalidArgument
from flaxgan.nn.activation import ACTIVATIONS
from flaxgan.nn.conv import conv2d, upsampling_conv2d
from flaxgan.nn.fir import setup_filter
from flaxgan.nn.layers import at_least_float32, minibatch_std
from flaxgan.nn.polyphase import upfirdn2d

__all__ = [
    "G_mapping",
    "G_synthesis",
    "G_style",
    "D_basic",
    "Dense",
    "Conv2d",
    "Noise",
    "StyleMod",
    "LabelConcat",
    "SynthesisLayer",
    "SynthesisBlock",
    "DiscriminatorBlock",
    "DiscriminatorHead",
    "nf",
    "num_layers",
    "resolve_structure",
    "use_fused_scale",
    "pixel_norm",
    "instance_norm",
    "blur2d",
    "upscale2d",
    "downscale2d",
    "lerp",
    "lerp_clip",
    "truncate",
    "style_mix",
    "mixing_cutoff",
    "update_dlatent_avg",
    "build_G_style",
    "build_D_basic",
    "NOISE_MODES",
    "UNSET",
]

GAIN = float(np.sqrt(2))  # He gain of relu / lrelu (the official `gain` of every layer).
LRELU_ALPHA = 0.2
DEFAULT_BLUR = (1, 2, 1)
FUSED_SCALE_MIN_RES = 128  # fused_scale='auto': fused up/down convolution from this resolution.
STRUCTURES = ("auto", "fixed", "linear", "recursive")
NONLINEARITIES = ("relu", "lrelu")
NOISE_MODES = ("random", "const", "none")


# ----------------------------------------------------------------------------- pure helpers


def nf(stage: int, fmap_base: int, fmap_decay: float, fmap_max: int) -> int:
    """Feature maps at `stage` (resolution 2**(stage + 1)): min(base / 2**(stage·decay), max)."""
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def _resolution_log2(resolution: int) -> int:
    log2 = int(np.log2(resolution)) if resolution > 0 else 0
    if resolution < 4 or resolution != 2**log2:
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return log2


def num_layers(resolution: int) -> int:
    """Synthesis layers (one dlatent each): two per resolution 4 .. `resolution`."""
    return 2 * _resolution_log2(resolution) - 2


def resolve_structure(structure: str) -> str:
    """'fixed' or 'linear' ('auto' and 'recursive' evaluate as 'linear', see module doc)."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    return "fixed" if structure == "fixed" else "linear"


def use_fused_scale(fused_scale: bool | str, res: int) -> bool:
    """Whether the up/down convolution at output/input resolution `res` is fused."""
    if fused_scale == "auto":
        return res >= FUSED_SCALE_MIN_RES
    if not isinstance(fused_scale, bool):
        raise ValueError(f"fused_scale must be True, False or 'auto', got {fused_scale!r}")
    return fused_scale


def _activation(name: str):
    if name not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {name!r}")
    fn = ACTIVATIONS[name].fn
    return lambda x: fn(x, LRELU_ALPHA)


def pixel_norm(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """`x / sqrt(mean(x², axis) + eps)` (the official normalizes the channel axis)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def instance_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """`[N, H, W, C]`: per sample and channel, `(x - mean) / sqrt(var + eps)` over H, W, in at
    least float32."""
    dtype = x.dtype
    x = at_least_float32(x)
    x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)
    return x.astype(dtype)


def blur2d(x: jax.Array, f: Sequence[float] | None = DEFAULT_BLUR) -> jax.Array:
    """Low-pass `[N, H, W, C]` with the normalized filter `f` (outer product if 1-D), same size.

    The official is a depthwise correlation with TF 'SAME' padding: `(k - 1) // 2` before.
    """
    if f is None:
        return x
    taps = setup_filter(f)
    kh, kw = (taps.shape[0],) * 2 if taps.ndim == 1 else taps.shape
    padding = [(kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2]
    return upfirdn2d(x, taps, padding=padding, flip_filter=True)


def upscale2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling `[N, H, W, C]` -> `[N, H·f, W·f, C]`."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return x.reshape(n, h * factor, w * factor, c)


def downscale2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Box-filter downsampling (mean of `f x f` blocks) `[N, H, W, C]` -> `[N, H/f, W/f, C]`."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    return jnp.mean(x.reshape(n, h // factor, factor, w // factor, factor, c), axis=(2, 4))


def lerp(a: jax.Array, b: jax.Array, t: jax.Array | float) -> jax.Array:
    """`a + (b - a) · t`."""
    return a + (b - a) * t


def lerp_clip(a: jax.Array, b: jax.Array, t: jax.Array | float) -> jax.Array:
    """`a + (b - a) · clip(t, 0, 1)`: the lod fade between two resolutions."""
    return a + (b - a) * jnp.clip(t, 0.0, 1.0)


def truncate(dlatents: jax.Array, dlatent_avg: jax.Array, psi: float | jax.Array,
             cutoff: int | jax.Array | None) -> jax.Array:
    """Truncation trick: `avg + psi · (w - avg)` for layers `< cutoff` (None: every layer).

    Args:
      dlatents: `[N, num_layers, D]`.
      dlatent_avg: `[D]`.
      psi: truncation strength (1 = identity, 0 = the average).
      cutoff: number of leading layers truncated.

    Returns:
      `[N, num_layers, D]`; layers `>= cutoff` are returned unchanged (bit-exact).
    """
    avg = dlatent_avg.astype(dlatents.dtype)
    truncated = avg + (dlatents - avg) * psi
    if cutoff is None:
        return truncated
    layer = jnp.arange(dlatents.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, truncated, dlatents)


def style_mix(dlatents: jax.Array, dlatents2: jax.Array, cutoff: int | jax.Array) -> jax.Array:
    """Layers `< cutoff` from `dlatents`, the rest from `dlatents2` (both `[N, L, D]`)."""
    layer = jnp.arange(dlatents.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, dlatents, dlatents2)


def mixing_cutoff(key: jax.Array, num_layers: int, lod: float | jax.Array,
                  prob: float) -> jax.Array:
    """The official random crossover of style-mixing regularization (int32 scalar).

    With probability `prob` uniform in `[1, cur_layers)`, else `cur_layers` (no mixing), where
    `cur_layers = num_layers - 2·int(lod)` are the layers in use at this level of detail.
    """
    cur_layers = num_layers - 2 * jnp.asarray(lod).astype(jnp.int32)
    k_mix, k_cut = jax.random.split(key)
    drawn = jax.random.randint(k_cut, (), 1, jnp.maximum(cur_layers, 2))
    return jnp.where(jax.random.uniform(k_mix, ()) < prob, drawn, cur_layers).astype(jnp.int32)


def update_dlatent_avg(dlatent_avg: jax.Array, dlatents: jax.Array, beta: float) -> jax.Array:
    """EMA of the batch-mean dlatent (layer 0 of `[N, L, D]`): `lerp(mean, avg, beta)`."""
    batch_avg = jnp.mean(at_least_float32(jax.lax.stop_gradient(dlatents[:, 0])), axis=0)
    return lerp(batch_avg, dlatent_avg, beta)


# ----------------------------------------------------------------------------- layers


def _weight(module: nn.Module, shape: Sequence[int], gain: float, use_wscale: bool,
            lrmul: float = 1.0) -> jax.Array:
    """The official `get_weight`: param 'weight' `shape` times its run-time coefficient.

    He std `gain / sqrt(fan_in)`, fan_in = prod(shape[:-1]); with `use_wscale` the variable
    has std `1 / lrmul` and is scaled by `he_std · lrmul`, else std `he_std / lrmul`, scale
    `lrmul`.
    """
    he_std = gain / np.sqrt(np.prod(shape[:-1]))
    init_std, coef = (1.0 / lrmul, he_std * lrmul) if use_wscale else (he_std / lrmul, lrmul)
    w = module.param("weight", lambda key, s: jax.random.normal(key, s) * init_std, tuple(shape))
    return w * np.float32(coef)


def _bias(module: nn.Module, x: jax.Array, lrmul: float = 1.0) -> jax.Array:
    """The official `apply_bias`: `x + bias · lrmul`, bias `[C]` (the last axis)."""
    b = module.param("bias", nn.initializers.zeros, (x.shape[-1],))
    return x + (b * np.float32(lrmul)).astype(x.dtype)


def _conv(x: jax.Array, w: jax.Array, stride: int = 1) -> jax.Array:
    """TF `conv2d(..., padding='SAME')`: NHWC `x`, HWIO `w`.

    'SAME' pads `(ceil(n / s) - 1) * s + k - n` per axis, the odd pixel after; every layer of
    the official networks pads evenly (odd kernels at stride 1, the fused 4x4 kernel at stride
    2 on even sizes): those take `nn.conv2d` (its CPU weight gradient)."""
    pads = [max((-(-n // stride) - 1) * stride + k - n, 0)
            for n, k in zip(x.shape[1:3], w.shape[:2], strict=True)]
    if all(p % 2 == 0 for p in pads):
        return conv2d(x, w, stride, (pads[0] // 2, pads[1] // 2))
    return jax.lax.conv_general_dilated(
        x, w.astype(x.dtype), (stride, stride), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _box_sum_kernel(w: jax.Array) -> jax.Array:
    """`[k, k, I, O]` -> `[k + 1, k + 1, I, O]`: sum of the kernel at its four 1-pixel shifts
    (the kernel of a 2x2 box filter followed by `w`, used by the fused resampling convs)."""
    w = jnp.pad(w, [(1, 1), (1, 1), (0, 0), (0, 0)])
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def _fused_upscale_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """The official fused `upscale2d_conv2d`: TF `conv2d_transpose` with the box-summed
    kernel, stride 2, 'SAME', `[N, H, W, I]` -> `[N, 2H, 2W, O]`.

    A transposed convolution is the correlation of the zero-stuffed input with the flipped
    kernel; TF 'SAME' pads the forward convolution by `(K - 2) // 2`, i.e. the stuffed input by
    `K - 1 - (K - 2) // 2 = K / 2` on both sides for the even `K = k + 1`.
    """
    w4 = _box_sum_kernel(w)
    pad = w4.shape[0] // 2
    return upsampling_conv2d(x, jnp.flip(w4, (0, 1)).astype(x.dtype), (pad, pad), 1, 2)


def _fused_conv_downscale(x: jax.Array, w: jax.Array) -> jax.Array:
    """The official fused `conv2d_downscale2d`: box-summed kernel / 4, stride 2, 'SAME'."""
    return _conv(x, _box_sum_kernel(w) * 0.25, stride=2)


class Dense(nn.Module):
    """Equalized-lr dense layer + bias (+ activation); scope holds `weight [in, fmaps]`, `bias`.

    `x [N, in] -> [N, fmaps]`.
    """

    fmaps: int
    gain: float = GAIN
    use_wscale: bool = True
    lrmul: float = 1.0
    nonlinearity: str | None = None  # None = linear.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = _weight(self, (x.shape[-1], self.fmaps), self.gain, self.use_wscale, self.lrmul)
        x = _bias(self, x @ w.astype(x.dtype), self.lrmul)
        return x if self.nonlinearity is None else _activation(self.nonlinearity)(x)


class Conv2d(nn.Module):
    """Equalized-lr `kernel x kernel` conv + bias (+ activation), optionally downsampling.

    `down`: blur, then conv + 2x2 box downscale (fused into one stride-2 conv when `fused`).
    Scope holds `weight [k, k, in, fmaps]`, `bias [fmaps]`. `x [N, H, W, in]` -> `[N, H', W',
    fmaps]`.
    """

    fmaps: int
    kernel: int
    gain: float = GAIN
    use_wscale: bool = True
    nonlinearity: str | None = None
    down: bool = False
    fused: bool = False
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        w = _weight(self, (k, k, x.shape[-1], self.fmaps), self.gain, self.use_wscale)
        if not self.down:
            x = _conv(x, w)
        elif self.fused:
            x = _fused_conv_downscale(blur2d(x, self.blur_filter), w)
        else:
            x = downscale2d(_conv(blur2d(x, self.blur_filter), w))
        x = _bias(self, x)
        return x if self.nonlinearity is None else _activation(self.nonlinearity)(x)


class Noise(nn.Module):
    """Per-channel scaled noise: `x + noise · weight`, weight `[C]` (zero-initialised)."""

    @nn.compact
    def __call__(self, x: jax.Array, noise: jax.Array | None) -> jax.Array:
        """`x [N, H, W, C]`, `noise [N or 1, H, W, 1]` or None (no noise; weight still made)."""
        weight = self.param("weight", nn.initializers.zeros, (x.shape[-1],))
        if noise is None:
            return x
        return x + noise.astype(x.dtype) * weight.astype(x.dtype)


class StyleMod(nn.Module):
    """AdaIN's style: `x · (s0 + 1) + s1` with `[s0, s1] = dense(dlatent)` (gain 1), per channel.

    Scope holds `weight [dlatent_size, 2C]`, `bias [2C]`.
    """

    use_wscale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, dlatent: jax.Array) -> jax.Array:
        """`x [N, H, W, C]`, `dlatent [N, D]` -> `[N, H, W, C]`."""
        c = x.shape[-1]
        w = _weight(self, (dlatent.shape[-1], 2 * c), 1.0, self.use_wscale)
        style = _bias(self, dlatent.astype(x.dtype) @ w.astype(x.dtype))
        scale, shift = style[:, None, None, :c], style[:, None, None, c:]
        return x * (scale + 1) + shift


class SynthesisLayer(nn.Module):
    """One synthesis layer: an input op, then the official `layer_epilogue` (noise, bias,
    activation, pixel norm, instance norm, style modulation), in one scope.

    `op`: 'const' (learned `const [1, 4, 4, fmaps]`, initialised to ones), 'dense' (dlatent ->
    4x4 with gain sqrt(2)/4, the ProGAN input), 'conv' (3x3) or 'conv_up' (2x upscale + 3x3 conv,
    fused when `fused`, then blur).
    """

    op: str
    fmaps: int
    use_wscale: bool = True
    nonlinearity: str = "lrelu"
    use_noise: bool = True
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    use_styles: bool = True
    fused: bool = False
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array | None, dlatents: jax.Array,
                 noise: jax.Array | None) -> jax.Array:
        """Runs the layer.

        Args:
          x: `[N, H, W, C_in]` (None for 'const' / 'dense').
          dlatents: `[N, D]`, this layer's dlatent ('dense' reads it as its input).
          noise: `[N or 1, H', W', 1]` or None.

        Returns:
          `[N, H', W', fmaps]` (H' = 4 for 'const' / 'dense', 2H for 'conv_up').
        """
        if self.op == "const":
            const = self.param("const", nn.initializers.ones, (1, 4, 4, self.fmaps))
            x = jnp.tile(const.astype(self.dtype), (dlatents.shape[0], 1, 1, 1))
        elif self.op == "dense":
            w = _weight(self, (dlatents.shape[-1], self.fmaps * 16), GAIN / 4, self.use_wscale)
            x = dlatents.astype(self.dtype) @ w.astype(self.dtype)
            x = jnp.transpose(x.reshape(-1, self.fmaps, 4, 4), (0, 2, 3, 1))  # official NCHW
        else:
            w = _weight(self, (3, 3, x.shape[-1], self.fmaps), GAIN, self.use_wscale)
            if self.op == "conv":
                x = _conv(x, w)
            elif self.op == "conv_up":
                x = _fused_upscale_conv(x, w) if self.fused else _conv(upscale2d(x), w)
                x = blur2d(x, self.blur_filter)
            else:
                raise ValueError(f"unknown synthesis layer op {self.op!r}")
        if self.use_noise:
            x = Noise(name="Noise")(x, noise)
        x = _activation(self.nonlinearity)(_bias(self, x))
        if self.use_pixel_norm:
            x = pixel_norm(x)
        if self.use_instance_norm:
            x = instance_norm(x)
        if self.use_styles:
            x = StyleMod(self.use_wscale, name="StyleMod")(x, dlatents)
        return x


# ----------------------------------------------------------------------------- G_mapping


class G_mapping(nn.Module):  # noqa: N801 (official name)
    """Mapping network: latents Z (+ labels) -> dlatents W. Attributes: the official kwargs.

    Variables: `Dense<i>/weight`, `Dense<i>/bias`, and `LabelConcat/weight [label_size,
    latent_size]` (an unscaled embedding, std 1) when `label_size > 0`.
    """

    latent_size: int = 512
    label_size: int = 0
    dlatent_size: int = 512
    dlatent_broadcast: int | None = None
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    mapping_nonlinearity: str = "lrelu"
    use_wscale: bool = True
    normalize_latents: bool = True
    dtype: str = "float32"

    @nn.compact
    def __call__(self, latents_in: jax.Array, labels_in: jax.Array | None = None) -> jax.Array:
        """`latents_in [N, latent_size]`, `labels_in [N, label_size]` -> dlatents `[N, D]`, or
        `[N, dlatent_broadcast, D]` when broadcasting."""
        dtype = jnp.dtype(self.dtype)
        _check_shape("latents_in", latents_in, (None, self.latent_size))
        x = latents_in.astype(dtype)
        if self.label_size:
            _check_shape("labels_in", labels_in, (None, self.label_size))
            embed = LabelConcat(self.latent_size, name="LabelConcat")(labels_in.astype(dtype))
            x = jnp.concatenate([x, embed], axis=1)
        if self.normalize_latents:
            x = pixel_norm(x)
        for idx in range(self.mapping_layers):
            fmaps = self.dlatent_size if idx == self.mapping_layers - 1 else self.mapping_fmaps
            x = Dense(fmaps, GAIN, self.use_wscale, self.mapping_lrmul, self.mapping_nonlinearity,
                      name=f"Dense{idx}")(x)
        if self.dlatent_broadcast is not None:
            x = jnp.broadcast_to(x[:, None], (x.shape[0], self.dlatent_broadcast, x.shape[1]))
        return x


class LabelConcat(nn.Module):
    """Label embedding `labels @ weight`, weight `[label_size, latent_size]` ~ N(0, 1)."""

    latent_size: int

    @nn.compact
    def __call__(self, labels: jax.Array) -> jax.Array:
        w = self.param("weight", jax.random.normal, (labels.shape[-1], self.latent_size))
        return labels @ w.astype(labels.dtype)


def _check_shape(name: str, x: jax.Array | None, shape: Sequence[int | None]) -> None:
    ok = x is not None and x.ndim == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=True))
    if not ok:
        got = None if x is None else tuple(x.shape)
        raise ValueError(f"{name} must have shape {tuple(shape)} (None = any), got {got}")


# ----------------------------------------------------------------------------- G_synthesis


class G_synthesis(nn.Module):  # noqa: N801 (official name)
    """Synthesis network: dlatents `[N, num_styles, D]` -> images `[N, R, R, num_channels]`.

    Attributes: the official kwargs (`randomize_noise` is the default noise behaviour of a
    call). Variables: `lod` and `noise<i>` `[1, R_i, R_i, 1]` (buffers), `4x4/Const|Dense`,
    `4x4/Conv`, `<R>x<R>/Conv0_up`, `<R>x<R>/Conv1` (each with `Noise/weight`, `bias`,
    `StyleMod/*`), `ToRGB_lod<l>` (every lod for 'linear', lod 0 only for 'fixed').
    """

    dlatent_size: int = 512
    num_channels: int = 3
    resolution: int = 1024
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    use_styles: bool = True
    const_input_layer: bool = True
    use_noise: bool = True
    randomize_noise: bool = True
    nonlinearity: str = "lrelu"
    use_wscale: bool = True
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    dtype: str = "float32"
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR
    structure: str = "auto"

    @property
    def num_layers(self) -> int:
        return num_layers(self.resolution)

    @property
    def num_styles(self) -> int:
        return self.num_layers if self.use_styles else 1

    def _nf(self, stage: int) -> int:
        return nf(stage, self.fmap_base, self.fmap_decay, self.fmap_max)

    def _noise_inputs(self, batch: int, mode: str, noise_layers: Sequence[int] | None
                      ) -> list[jax.Array | None]:
        """Per layer: the noise image `[N or 1, R, R, 1]`, or None (no noise)."""
        if not self.use_noise:
            return [None] * self.num_layers
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        chosen = None if noise_layers is None else {int(i) for i in noise_layers}
        out = []
        for idx in range(self.num_layers):
            res = 2 ** (idx // 2 + 2)
            stored = self.variable(
                "buffers", f"noise{idx}",
                lambda r=res: jax.random.normal(self.make_rng("params"), (1, r, r, 1)))
            if mode == "none" or (chosen is not None and idx not in chosen):
                out.append(None)
            elif mode == "random":
                out.append(jax.random.normal(self.make_rng("noise"), (batch, res, res, 1)))
            else:
                out.append(stored.value)
        return out

    @nn.compact
    def __call__(
        self,
        dlatents_in: jax.Array,
        lod: float | jax.Array | None = None,
        randomize_noise: bool | None = None,
        noise_mode: str | None = None,
        noise_layers: Sequence[int] | None = None,
    ) -> jax.Array:
        """Synthesizes images.

        Args:
          dlatents_in: `[N, num_styles, dlatent_size]`.
          lod: level of detail for 'linear' (None: the `lod` buffer); may be traced.
          randomize_noise: official switch: True = fresh noise (rng 'noise'), False = the stored
            `noise<i>`; None = the attribute.
          noise_mode: 'random', 'const' or 'none'; overrides `randomize_noise` when given.
          noise_layers: indices of the layers that receive noise (None = all).

        Returns:
          `[N, resolution, resolution, num_channels]`, raw (not clamped).
        """
        _check_shape("dlatents_in", dlatents_in, (None, self.num_styles, self.dlatent_size))
        log2 = _resolution_log2(self.resolution)
        structure = resolve_structure(self.structure)
        dtype = jnp.dtype(self.dtype)
        dlatents = dlatents_in.astype(dtype)
        lod_var = self.variable("buffers", "lod", lambda: jnp.zeros((), jnp.float32))
        lod_in = lod_var.value if lod is None else jnp.asarray(lod, jnp.float32)
        if noise_mode is None:
            randomize = self.randomize_noise if randomize_noise is None else randomize_noise
            noise_mode = "random" if randomize else "const"
        noise = self._noise_inputs(dlatents.shape[0], noise_mode, noise_layers)
        layer_kwargs = dict(
            use_wscale=self.use_wscale, nonlinearity=self.nonlinearity, use_noise=self.use_noise,
            use_pixel_norm=self.use_pixel_norm, use_instance_norm=self.use_instance_norm,
            use_styles=self.use_styles, blur_filter=self.blur_filter, dtype=dtype.name)

        def block(res_log2: int, x: jax.Array | None) -> jax.Array:
            idx = 2 * res_log2 - 4  # the block's first layer
            styles = dlatents[:, idx:idx + 2] if self.use_styles else dlatents[:, :1]
            res = 2**res_log2
            return SynthesisBlock(
                res_log2, self._nf(res_log2 - 1), self.const_input_layer,
                use_fused_scale(self.fused_scale, res), FrozenDict(layer_kwargs),
                name=f"{res}x{res}")(x, styles, noise[idx:idx + 2])

        def torgb(res_log2: int, x: jax.Array) -> jax.Array:
            return Conv2d(self.num_channels, 1, gain=1.0, use_wscale=self.use_wscale,
                          name=f"ToRGB_lod{log2 - res_log2}")(x)

        x = block(2, None)
        if structure == "fixed":
            for res_log2 in range(3, log2 + 1):
                x = block(res_log2, x)
            return torgb(log2, x)
        images = torgb(2, x)
        for res_log2 in range(3, log2 + 1):
            x = block(res_log2, x)
            img = torgb(res_log2, x)
            images = lerp_clip(img, upscale2d(images), lod_in - (log2 - res_log2))
        return images


class SynthesisBlock(nn.Module):
    """The two layers of one resolution, scope `<R>x<R>`: `Const` (or `Dense`) + `Conv` at 4x4,
    else `Conv0_up` + `Conv1`.

    Attributes: `res_log2`, `fmaps`, `const_input_layer` (4x4), `fused` (fused upscale conv) and
    `layer_kwargs` (the shared `SynthesisLayer` attributes).
    """

    res_log2: int
    fmaps: int
    const_input_layer: bool = True
    fused: bool = False
    layer_kwargs: Mapping[str, Any] = FrozenDict()

    @nn.compact
    def __call__(self, x: jax.Array | None, dlatents: jax.Array,
                 noise: Sequence[jax.Array | None]) -> jax.Array:
        """`x [N, R/2, R/2, C]` (None at 4x4), `dlatents [N, 2 or 1, D]` (one per layer, or one
        shared when styles are off), `noise`: two `[N or 1, R, R, 1]` or None -> `[N, R, R,
        fmaps]`."""
        kw = dict(self.layer_kwargs)
        w0, w1 = dlatents[:, 0], dlatents[:, -1]
        if self.res_log2 == 2:
            op, first = ("const", "Const") if self.const_input_layer else ("dense", "Dense")
            x = SynthesisLayer(op, self.fmaps, name=first, **kw)(None, w0, noise[0])
            return SynthesisLayer("conv", self.fmaps, name="Conv", **kw)(x, w1, noise[1])
        x = SynthesisLayer("conv_up", self.fmaps, fused=self.fused, name="Conv0_up", **kw)(
            x, w0, noise[0])
        return SynthesisLayer("conv", self.fmaps, name="Conv1", **kw)(x, w1, noise[1])


# ----------------------------------------------------------------------------- G_style


class _Unset:
    """Default of a call argument that falls back to the module attribute."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class G_style(nn.Module):  # noqa: N801 (official name)
    """The StyleGAN generator: `G_mapping` + truncation / style mixing / dlatent EMA +
    `G_synthesis`. Attributes: the official kwargs of all three build functions.

    Variables: own buffers `lod` and `dlatent_avg [dlatent_size]`, and the sub-networks' under
    `G_mapping/...`, `G_synthesis/...`.

    Besides the official call (`__call__`), the flaxgan generator API: `z_dim`, `c_dim`,
    `w_dim`, `num_ws`, `img_resolution`, `img_channels`, `map` and `synthesize` (as the
    StyleGAN2 `Generator`; there, `truncation_cutoff=None` means every layer).
    """

    # G_style
    truncation_psi: float | None = 0.7
    truncation_cutoff: int | None = 8
    truncation_psi_val: float | None = None
    truncation_cutoff_val: int | None = None
    dlatent_avg_beta: float | None = 0.995
    style_mixing_prob: float | None = 0.9
    # G_mapping
    latent_size: int = 512
    label_size: int = 0
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    mapping_nonlinearity: str = "lrelu"
    normalize_latents: bool = True
    # G_synthesis
    num_channels: int = 3
    resolution: int = 1024
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    use_styles: bool = True
    const_input_layer: bool = True
    use_noise: bool = True
    randomize_noise: bool = True
    nonlinearity: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR
    structure: str = "auto"
    # Both
    use_wscale: bool = True
    dtype: str = "float32"

    def setup(self):
        self.G_synthesis = G_synthesis(
            dlatent_size=self.dlatent_size, num_channels=self.num_channels,
            resolution=self.resolution, fmap_base=self.fmap_base, fmap_decay=self.fmap_decay,
            fmap_max=self.fmap_max, use_styles=self.use_styles,
            const_input_layer=self.const_input_layer, use_noise=self.use_noise,
            randomize_noise=self.randomize_noise, nonlinearity=self.nonlinearity,
            use_wscale=self.use_wscale, use_pixel_norm=self.use_pixel_norm,
            use_instance_norm=self.use_instance_norm, dtype=self.dtype,
            fused_scale=self.fused_scale, blur_filter=self.blur_filter, structure=self.structure)
        self.G_mapping = G_mapping(
            latent_size=self.latent_size, label_size=self.label_size,
            dlatent_size=self.dlatent_size, dlatent_broadcast=self.num_ws,
            mapping_layers=self.mapping_layers, mapping_fmaps=self.mapping_fmaps,
            mapping_lrmul=self.mapping_lrmul, mapping_nonlinearity=self.mapping_nonlinearity,
            use_wscale=self.use_wscale, normalize_latents=self.normalize_latents,
            dtype=self.dtype)
        self.lod = self.variable("buffers", "lod", lambda: jnp.zeros((), jnp.float32))
        self.dlatent_avg = self.variable("buffers", "dlatent_avg",
                                         lambda: jnp.zeros((self.dlatent_size,), jnp.float32))

    # flaxgan generator API -----------------------------------------------------------------

    @property
    def z_dim(self) -> int:
        return self.latent_size

    @property
    def c_dim(self) -> int:
        return self.label_size

    @property
    def w_dim(self) -> int:
        return self.dlatent_size

    @property
    def img_resolution(self) -> int:
        return self.resolution

    @property
    def img_channels(self) -> int:
        return self.num_channels

    @property
    def num_ws(self) -> int:
        return num_layers(self.resolution) if self.use_styles else 1

    def map(self, z: jax.Array, c: jax.Array | None = None,
            truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None,
            update_emas: bool = False) -> jax.Array:
        """z `[N, z_dim]`, c `[N, c_dim]` -> ws `[N, num_ws, w_dim]`.

        Truncation about `dlatent_avg` for the first `truncation_cutoff` ws (None = all);
        `update_emas` moves `dlatent_avg` towards this batch (needs `mutable=['buffers']`).
        """
        ws = self.G_mapping(z, c)
        if update_emas and self.dlatent_avg_beta is not None and not self.is_initializing():
            self.dlatent_avg.value = update_dlatent_avg(self.dlatent_avg.value, ws,
                                                        self.dlatent_avg_beta)
        if isinstance(truncation_psi, int | float) and truncation_psi == 1:
            return ws
        return truncate(ws, self.dlatent_avg.value, truncation_psi, truncation_cutoff)

    def synthesize(self, ws: jax.Array, noise_mode: str = "random",
                   noise_layers: Sequence[int] | None = None,
                   lod: float | jax.Array | None = None, update_emas: bool = False,
                   fused_modconv: bool | None = None) -> jax.Array:
        """ws `[N, num_ws, w_dim]` -> images `[N, R, R, C]` (NHWC, raw).

        `noise_mode` 'random' needs the 'noise' rng; `lod` defaults to the `lod` buffer.
        `update_emas` and `fused_modconv` are accepted for the StyleGAN2 generator API (the
        training step calls both families alike); they change nothing here (no statistics in
        the synthesis network, no modulated convolutions).
        """
        del update_emas, fused_modconv
        return self.G_synthesis(ws, self._lod(lod), noise_mode=noise_mode,
                                noise_layers=noise_layers)

    def _lod(self, lod: float | jax.Array | None) -> jax.Array:
        return self.lod.value if lod is None else jnp.asarray(lod, jnp.float32)

    # official call ---------------------------------------------------------------------------

    def __call__(
        self,
        latents_in: jax.Array,
        labels_in: jax.Array | None = None,
        *,
        lod: float | jax.Array | None = None,
        is_training: bool = False,
        is_validation: bool = False,
        truncation_psi: Any = UNSET,
        truncation_cutoff: Any = UNSET,
        randomize_noise: bool | None = None,
        noise_mode: str | None = None,
        noise_layers: Sequence[int] | None = None,
        latents2: jax.Array | None = None,
        mixing_cutoff: int | jax.Array | None = None,
    ) -> jax.Array:
        """The official `G_style`: latents (+ labels) -> images `[N, R, R, C]`.

        Args:
          latents_in: `[N, latent_size]`.
          labels_in: `[N, label_size]` (unused when label_size == 0).
          lod: level of detail (None: the `lod` buffer); passed to the synthesis network.
          is_training: update `dlatent_avg` (needs `mutable=['buffers']`) and mix styles (rng
            'mixing' for what is not given); no truncation.
          is_validation: truncate with `truncation_psi_val` / `truncation_cutoff_val`.
          truncation_psi, truncation_cutoff: override the attributes; None (or psi 1, cutoff
            <= 0) disables truncation, as the official.
          randomize_noise, noise_mode, noise_layers: see `G_synthesis.__call__`.
          latents2: the second latents of style mixing (default: drawn, rng 'mixing').
          mixing_cutoff: the crossover layer of style mixing (default: drawn as the official,
            `mixing_cutoff()`).

        Returns:
          `[N, resolution, resolution, num_channels]`, raw.
        """
        if is_training and is_validation:
            raise ValueError("is_training and is_validation are exclusive")
        psi = self.truncation_psi if truncation_psi is UNSET else truncation_psi
        cutoff = self.truncation_cutoff if truncation_cutoff is UNSET else truncation_cutoff
        if is_validation:
            psi, cutoff = self.truncation_psi_val, self.truncation_cutoff_val
        lod_in = self._lod(lod)

        dlatents = self.G_mapping(latents_in, labels_in)
        if is_training and self.dlatent_avg_beta is not None and self.dlatent_avg_beta != 1:
            if not self.is_initializing():
                self.dlatent_avg.value = update_dlatent_avg(self.dlatent_avg.value, dlatents,
                                                            self.dlatent_avg_beta)
        mixing = self.style_mixing_prob is not None and self.style_mixing_prob > 0
        if is_training and mixing:
            dlatents = self._mix(dlatents, latents_in, labels_in, lod_in, latents2, mixing_cutoff)
        if not is_training and _truncates(psi, cutoff):
            dlatents = truncate(dlatents, self.dlatent_avg.value, psi, cutoff)
        return self.G_synthesis(dlatents, lod_in, randomize_noise, noise_mode, noise_layers)

    def _mix(self, dlatents, latents_in, labels_in, lod_in, latents2, cutoff) -> jax.Array:
        """Style-mixing regularization: layers from `cutoff` on come from `latents2`."""
        if latents2 is None or cutoff is None:
            k_latents, k_cutoff = jax.random.split(self.make_rng("mixing"))
            if latents2 is None:
                latents2 = jax.random.normal(k_latents, latents_in.shape, jnp.float32)
            if cutoff is None:
                cutoff = mixing_cutoff(k_cutoff, self.num_ws, lod_in, self.style_mixing_prob)
        return style_mix(dlatents, self.G_mapping(latents2, labels_in), cutoff)


def _truncates(psi: Any, cutoff: Any) -> bool:
    """The official switch: truncation unless psi is None / 1 or cutoff is None / <= 0."""
    if psi is None or cutoff is None:
        return False
    if isinstance(psi, int | float) and psi == 1:
        return False
    return not (isinstance(cutoff, int | float) and cutoff <= 0)


# ----------------------------------------------------------------------------- D_basic


class D_basic(nn.Module):  # noqa: N801 (official name)
    """The StyleGAN (ProGAN) discriminator: images `[N, R, R, num_channels]` -> scores `[N, 1]`.

    Attributes: the official kwargs. Variables: buffer `lod`; `FromRGB_lod<l>` (every lod for
    'linear', lod 0 only for 'fixed'), `<R>x<R>/Conv0`, `<R>x<R>/Conv1_down`, `4x4/Conv`,
    `4x4/Dense0`, `4x4/Dense1` (`max(label_size, 1)` outputs).
    """

    num_channels: int = 1
    resolution: int = 32
    label_size: int = 0
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    nonlinearity: str = "lrelu"
    use_wscale: bool = True
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    dtype: str = "float32"
    fused_scale: bool | str = "auto"
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR
    structure: str = "auto"

    def _nf(self, stage: int) -> int:
        return nf(stage, self.fmap_base, self.fmap_decay, self.fmap_max)

    # flaxgan discriminator API (as the StyleGAN2 `Discriminator`).
    @property
    def img_resolution(self) -> int:
        return self.resolution

    @property
    def img_channels(self) -> int:
        return self.num_channels

    @property
    def c_dim(self) -> int:
        return self.label_size

    @nn.compact
    def __call__(self, images_in: jax.Array, labels_in: jax.Array | None = None,
                 lod: float | jax.Array | None = None) -> jax.Array:
        """Scores images.

        Args:
          images_in: `[N, resolution, resolution, num_channels]`.
          labels_in: `[N, label_size]` (unused when label_size == 0).
          lod: level of detail for 'linear' (None: the `lod` buffer); may be traced.

        Returns:
          `[N, 1]`: the score, or for label_size > 0 the score of each sample's label
          (`sum(scores · labels)`, the official 'LabelSwitch').
        """
        log2 = _resolution_log2(self.resolution)
        structure = resolve_structure(self.structure)
        _check_shape("images_in", images_in,
                     (None, self.resolution, self.resolution, self.num_channels))
        lod_var = self.variable("buffers", "lod", lambda: jnp.zeros((), jnp.float32))
        lod_in = lod_var.value if lod is None else jnp.asarray(lod, jnp.float32)
        conv = dict(use_wscale=self.use_wscale, nonlinearity=self.nonlinearity)
        img = images_in.astype(jnp.dtype(self.dtype))

        def fromrgb(x: jax.Array, res_log2: int) -> jax.Array:
            return Conv2d(self._nf(res_log2 - 1), 1, name=f"FromRGB_lod{log2 - res_log2}",
                          **conv)(x)

        x = fromrgb(img, log2)
        for res_log2 in range(log2, 2, -1):
            res = 2**res_log2
            x = DiscriminatorBlock(
                self._nf(res_log2 - 1), self._nf(res_log2 - 2),
                use_fused_scale(self.fused_scale, res), self.blur_filter, self.nonlinearity,
                self.use_wscale, name=f"{res}x{res}")(x)
            if structure == "linear":
                img = downscale2d(img)
                y = fromrgb(img, res_log2 - 1)
                x = lerp_clip(x, y, lod_in - (log2 - res_log2))
        scores = DiscriminatorHead(
            self._nf(1), self._nf(0), max(self.label_size, 1), self.mbstd_group_size,
            self.mbstd_num_features, self.nonlinearity, self.use_wscale, name="4x4")(x)
        if self.label_size:
            _check_shape("labels_in", labels_in, (None, self.label_size))
            scores = jnp.sum(scores * labels_in.astype(scores.dtype), axis=1, keepdims=True)
        return scores


class DiscriminatorBlock(nn.Module):
    """One resolution of `D_basic`, scope `<R>x<R>`: `Conv0` (3x3), `Conv1_down` (blur, 3x3,
    2x box downscale, or the fused stride-2 conv). `[N, R, R, C]` -> `[N, R/2, R/2, fmaps1]`."""

    fmaps0: int
    fmaps1: int
    fused: bool = False
    blur_filter: tuple[float, ...] | None = DEFAULT_BLUR
    nonlinearity: str = "lrelu"
    use_wscale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(use_wscale=self.use_wscale, nonlinearity=self.nonlinearity)
        x = Conv2d(self.fmaps0, 3, name="Conv0", **kw)(x)
        return Conv2d(self.fmaps1, 3, down=True, fused=self.fused, blur_filter=self.blur_filter,
                      name="Conv1_down", **kw)(x)


class DiscriminatorHead(nn.Module):
    """The 4x4 block of `D_basic`: minibatch stddev, `Conv` (3x3), `Dense0`, `Dense1` (gain 1,
    linear). `[N, 4, 4, C]` -> `[N, out_fmaps]`."""

    conv_fmaps: int
    dense_fmaps: int
    out_fmaps: int
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    nonlinearity: str = "lrelu"
    use_wscale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mbstd_group_size > 1:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_features)
        x = Conv2d(self.conv_fmaps, 3, use_wscale=self.use_wscale,
                   nonlinearity=self.nonlinearity, name="Conv")(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # official NCHW flatten
        x = Dense(self.dense_fmaps, GAIN, self.use_wscale, nonlinearity=self.nonlinearity,
                  name="Dense0")(x)
        return Dense(self.out_fmaps, 1.0, self.use_wscale, name="Dense1")(x)


# ----------------------------------------------------------------------------- builders

# Integer kwargs -> accepted range (as `registry`: beyond them a snapshot is damaged).
_INT_RANGES = {
    "latent_size": (1, 1 << 16), "label_size": (0, 1 << 16), "dlatent_size": (1, 1 << 16),
    "mapping_layers": (1, 64), "mapping_fmaps": (1, 1 << 16), "num_channels": (1, 4),
    "resolution": (4, 8192), "fmap_base": (1, 1 << 24), "fmap_max": (1, 1 << 16),
    "mbstd_group_size": (0, 1 << 16), "mbstd_num_features": (0, 1 << 10),
}
# Build-time switches of the official functions that change no computation here.
_IGNORED_KWARGS = ("is_template_graph", "force_clean_graph")


def _module_kwargs(cls: type[nn.Module], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Official kwargs -> the module's, checked: unknown names (TypeError), integer ranges and
    the power-of-two resolution (InvalidArgument); lists become tuples (hashable modules)."""
    known = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED_KWARGS}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} got unexpected arguments {unknown}")
    for key, value in kwargs.items():
        if key in _INT_RANGES:
            lo, hi = _INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidArgument(f"{key}={value!r}: expected an integer in [{lo}, {hi}]")
    res = kwargs.get("resolution")
    if res is not None and res & (res - 1):
        raise InvalidArgument(f"resolution={res}: expected a power of two")
    if isinstance(kwargs.get("blur_filter"), list | tuple):
        kwargs["blur_filter"] = tuple(float(v) for v in kwargs["blur_filter"])
    return kwargs


def build_G_style(kwargs: Mapping[str, Any]) -> G_style:  # noqa: N802 (official name)
    """`G_style` from the official kwargs (`training.networks_stylegan.G_style`)."""
    return G_style(**_module_kwargs(G_style, kwargs))


def build_D_basic(kwargs: Mapping[str, Any]) -> D_basic:  # noqa: N802 (official name)
    """`D_basic` from the official kwargs (`training.networks_stylegan.D_basic`)."""
    return D_basic(**_module_kwargs(D_basic, kwargs))
