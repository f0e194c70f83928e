"""StyleGAN2-ADA generator and discriminator (Karras et al. 2020), Flax Linen, NHWC.

Module names, constructor arguments and defaults mirror the official stylegan2-ada-pytorch
networks so that a snapshot's `state_dict` maps onto the variables through the name table in
`flaxgan.convert` (`synthesis.b32.conv0.weight` <-> `params/synthesis/b32/conv0/weight`).

Variables: 'params' (trainable, float32) and 'buffers' (`w_avg`, `noise_const`, frozen
weights). Reduced precision: blocks at the top `num_fp16_res` resolutions compute in
`reduced_dtype` (bfloat16 on accelerators, float32 on CPU by default); params stay float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from flaxgan.nn.activation import activation_spec, bias_act
from flaxgan.nn.conv import modulated_conv2d
from flaxgan.nn.fir import setup_filter
from flaxgan.nn.layers import (
    DEFAULT_RESAMPLE_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    minibatch_std,
    normalize_2nd_moment,
)
from flaxgan.nn.polyphase import downsample2d, upsample2d

__all__ = [
    "MappingNetwork",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "GeneratorBase",
    "Generator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "Discriminator",
    "synthesis_num_ws",
    "NOISE_MODES",
    "freeze_kwargs",
]

NOISE_MODES = ("random", "const", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
SQRT_HALF = float(np.sqrt(0.5))


def default_reduced_dtype() -> jnp.dtype:
    """bfloat16 on accelerators; float32 on CPU, where reduced precision is no faster."""
    return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def _channels(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


def _fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in reduced precision."""
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _block_resolutions(img_resolution: int) -> list[int]:
    if img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]


def synthesis_num_ws(img_resolution: int, architecture: str = "skip") -> int:
    """Number of w vectors the synthesis network consumes: one per conv layer plus final toRGB."""
    del architecture  # Every architecture has 2 convs per block (1 at 4x4) and one last toRGB.
    return 2 * len(_block_resolutions(img_resolution))


# ----------------------------------------------------------------------------- mapping


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to `num_ws`, with the tracked average `w_avg`.

    Attributes follow the official `MappingNetwork`.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int | None
    num_layers: int = 8
    embed_features: int | None = None
    layer_features: int | None = None
    activation: str = "lrelu"
    lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995

    @nn.compact
    def __call__(
        self,
        z: jax.Array | None,
        c: jax.Array | None,
        truncation_psi: float | jax.Array = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> jax.Array:
        """Maps latents to intermediate latents.

        Args:
          z: `[N, z_dim]` (ignored when z_dim == 0).
          c: `[N, c_dim]` labels (ignored when c_dim == 0).
          truncation_psi: truncation strength ψ: w' = w_avg + ψ (w - w_avg).
          truncation_cutoff: truncate only the first `cutoff` ws; None = all.
          update_emas: update `w_avg` with this batch (call with `mutable=['buffers']`).

        Returns:
          `[N, num_ws, w_dim]`, or `[N, w_dim]` when `num_ws` is None.
        """
        embed_features = 0 if self.c_dim == 0 else (self.embed_features or self.w_dim)
        layer_features = self.layer_features or self.w_dim
        parts = []
        if self.z_dim > 0:
            _check_shape("z", z, (None, self.z_dim))
            parts.append(normalize_2nd_moment(z.astype(jnp.float32)))
        if self.c_dim > 0:
            _check_shape("c", c, (None, self.c_dim))
            y = FullyConnectedLayer(embed_features, name="embed")(c.astype(jnp.float32))
            parts.append(normalize_2nd_moment(y))
        x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

        for idx in range(self.num_layers):
            features = self.w_dim if idx == self.num_layers - 1 else layer_features
            x = FullyConnectedLayer(features, activation=self.activation,
                                    lr_multiplier=self.lr_multiplier, name=f"fc{idx}")(x)

        track = self.num_ws is not None and self.w_avg_beta is not None
        if track:
            w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
            if update_emas and not self.is_initializing():
                # w_avg <- lerp(mean(w), w_avg, beta)
                batch_mean = jnp.mean(jax.lax.stop_gradient(x), axis=0)
                w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)

        if self.num_ws is not None:
            x = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, self.w_dim))

        if not _is_one(truncation_psi):
            if not track:
                raise ValueError("truncation needs w_avg (num_ws and w_avg_beta must be set)")
            center = w_avg.value.astype(x.dtype)
            truncated = center + truncation_psi * (x - center)
            if not isinstance(truncation_psi, int | float | np.number):
                truncated = jnp.where(truncation_psi == 1, x, truncated)  # exact at traced ψ = 1
            if self.num_ws is None or truncation_cutoff is None:
                x = truncated
            else:
                layer = jnp.arange(self.num_ws)[None, :, None]
                x = jnp.where(layer < truncation_cutoff, truncated, x)
        return x


def _is_one(value: Any) -> bool:
    """True for a Python/NumPy scalar equal to 1 (traced values are never skipped)."""
    return isinstance(value, int | float | np.number) and float(value) == 1.0


def _check_shape(name: str, x: jax.Array | None, shape: Sequence[int | None]) -> None:
    ok = x is not None and x.ndim == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=True)
    )
    if not ok:
        got = None if x is None else tuple(x.shape)
        raise ValueError(f"{name} must have shape {tuple(shape)} (None = any), got {got}")


# ----------------------------------------------------------------------------- synthesis


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + activation."""

    out_channels: int
    w_dim: int
    resolution: int
    kernel_size: int = 3
    up: int = 1
    use_noise: bool = True
    activation: str = "lrelu"
    resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER
    conv_clamp: float | None = None

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        w: jax.Array,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
    ) -> jax.Array:
        """`x [N, R/up, R/up, C_in]`, `w [N, w_dim]` -> `[N, R, R, out_channels]`."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        in_channels = x.shape[-1]
        styles = FullyConnectedLayer(in_channels, bias_init=1.0, name="affine")(w)
        k = self.kernel_size
        weight = self.param("weight", jax.random.normal, (k, k, in_channels, self.out_channels))

        noise = None
        if self.use_noise:
            res = self.resolution
            noise_const = self.variable(
                "buffers", "noise_const",
                lambda: jax.random.normal(self.make_rng("params"), (res, res)),
            )
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            if noise_mode == "random":
                noise = jax.random.normal(self.make_rng("noise"), (x.shape[0], res, res, 1))
                noise = noise * strength
            elif noise_mode == "const":
                noise = (noise_const.value * strength)[None, :, :, None]

        x = modulated_conv2d(
            x, weight, styles, noise=noise, up=self.up, padding=k // 2,
            resample_filter=setup_filter(self.resample_filter), flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        act_gain = activation_spec(self.activation).default_gain * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        return bias_act(x, bias, act=self.activation, gain=act_gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    out_channels: int
    w_dim: int
    kernel_size: int = 1
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, fused_modconv: bool = True) -> jax.Array:
        """`x [N, H, W, C]`, `w [N, w_dim]` -> `[N, H, W, out_channels]`."""
        in_channels = x.shape[-1]
        k = self.kernel_size
        weight_gain = 1 / np.sqrt(in_channels * k * k)
        styles = FullyConnectedLayer(in_channels, bias_init=1.0, name="affine")(w) * weight_gain
        weight = self.param("weight", jax.random.normal, (k, k, in_channels, self.out_channels))
        x = modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=fused_modconv)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        return bias_act(x, bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const or 2x up conv), conv, toRGB."""

    in_channels: int  # 0 = first block (learned constant input).
    out_channels: int
    w_dim: int
    resolution: int
    img_channels: int
    is_last: bool
    architecture: str = "skip"
    resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER
    conv_clamp: float | None = None
    use_fp16: bool = False
    fp16_channels_last: bool = False  # Memory-format hint of the official code; no-op in XLA.
    kernel_size: int = 3
    use_noise: bool = True
    activation: str = "lrelu"
    reduced_dtype: Any = None

    @property
    def num_conv(self) -> int:
        return 1 if self.in_channels == 0 else 2

    @property
    def num_torgb(self) -> int:
        return int(self.is_last or self.architecture == "skip")

    @nn.compact
    def __call__(
        self,
        x: jax.Array | None,
        img: jax.Array | None,
        ws: jax.Array,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
        noise_flags: Sequence[bool] | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Runs the block.

        Args:
          x: features `[N, R/2, R/2, in_channels]` (None for the first block).
          img: image so far `[N, R/2, R/2, img_channels]` float32, or None.
          ws: `[N, num_conv + num_torgb, w_dim]`.
          noise_mode: 'random', 'const' or 'none'.
          fused_modconv: None = fused for batch 1 only (faster under XLA; equal results).
          force_fp32: compute in float32 even if the block is a reduced-precision one.
          noise_flags: per conv layer, whether it receives noise (None = all).

        Returns:
          `(x [N, R, R, out_channels], img [N, R, R, img_channels] or None)`.
        """
        _check_architecture(self.architecture)
        _check_shape("block ws", ws, (None, self.num_conv + self.num_torgb, self.w_dim))
        dtype = (self.reduced_dtype or default_reduced_dtype()) if (
            self.use_fp16 and not force_fp32) else jnp.float32
        if fused_modconv is None:
            # Equal results either way; under XLA one shared-weight convolution with scaled
            # activations beats a grouped convolution with per-sample weights unless N = 1.
            fused_modconv = ws.shape[0] == 1
        noise_flags = (True,) * self.num_conv if noise_flags is None else tuple(noise_flags)
        layer_modes = [noise_mode if flag else "none" for flag in noise_flags]
        layer_kwargs = dict(w_dim=self.w_dim, resolution=self.resolution,
                            kernel_size=self.kernel_size, use_noise=self.use_noise,
                            activation=self.activation, resample_filter=self.resample_filter,
                            conv_clamp=self.conv_clamp)

        ws = ws.astype(dtype)
        if self.in_channels == 0:
            const = self.param("const", jax.random.normal,
                               (self.resolution, self.resolution, self.out_channels))
            x = jnp.broadcast_to(const.astype(dtype)[None], (ws.shape[0], *const.shape))
            x = SynthesisLayer(self.out_channels, name="conv1", **layer_kwargs)(
                x, ws[:, 0], layer_modes[0], fused_modconv)
        else:
            _check_shape("block input", x, (None, self.resolution // 2, self.resolution // 2,
                                             self.in_channels))
            x = x.astype(dtype)
            conv0 = SynthesisLayer(self.out_channels, up=2, name="conv0", **layer_kwargs)
            conv1 = SynthesisLayer(self.out_channels, name="conv1", **layer_kwargs)
            if self.architecture == "resnet":
                y = Conv2dLayer(self.out_channels, kernel_size=1, bias=False, up=2,
                                resample_filter=self.resample_filter, name="skip")(
                    x, gain=SQRT_HALF)
                x = conv0(x, ws[:, 0], layer_modes[0], fused_modconv)
                x = conv1(x, ws[:, 1], layer_modes[1], fused_modconv, gain=SQRT_HALF)
                x = y + x
            else:
                x = conv0(x, ws[:, 0], layer_modes[0], fused_modconv)
                x = conv1(x, ws[:, 1], layer_modes[1], fused_modconv)

        if img is not None:
            img = upsample2d(img, setup_filter(self.resample_filter))
        if self.num_torgb:
            y = ToRGBLayer(self.img_channels, w_dim=self.w_dim, conv_clamp=self.conv_clamp,
                           name="torgb")(x, ws[:, self.num_conv], fused_modconv)
            y = y.astype(jnp.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws `[N, num_ws, w_dim]` -> image `[N, R, R, img_channels]` (raw, not clamped)."""

    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    architecture: str = "skip"
    resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER
    conv_clamp: float | None = None
    fp16_channels_last: bool = False
    kernel_size: int = 3
    use_noise: bool = True
    activation: str = "lrelu"
    reduced_dtype: Any = None

    @property
    def block_resolutions(self) -> list[int]:
        return _block_resolutions(self.img_resolution)

    @property
    def num_ws(self) -> int:
        return synthesis_num_ws(self.img_resolution, self.architecture)

    @nn.compact
    def __call__(
        self,
        ws: jax.Array,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
        noise_layers: Sequence[int] | None = None,
        update_emas: bool = False,
    ) -> jax.Array:
        """Synthesizes images.

        Args:
          ws: `[N, num_ws, w_dim]`.
          noise_mode: 'random' (needs the 'noise' RNG), 'const' or 'none'.
          fused_modconv: see `SynthesisBlock`.
          force_fp32: compute every block in float32.
          noise_layers: indices (into ws, i.e. conv layers in order) of the layers that receive
            noise; None = all.
          update_emas: unused (StyleGAN2 synthesis tracks no statistics); for a common API.

        Returns:
          float32 `[N, R, R, img_channels]`. Block outputs `(x, img)` are available with
          `apply(..., capture_intermediates=True)`.
        """
        del update_emas
        _check_shape("ws", ws, (None, self.num_ws, self.w_dim))
        ws = ws.astype(jnp.float32)
        fp16_res = _fp16_resolution(self.img_resolution, self.num_fp16_res)
        noisy = None if noise_layers is None else {int(i) for i in noise_layers}
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            in_channels = _channels(res // 2, self.channel_base, self.channel_max) if res > 4 else 0
            block = SynthesisBlock(
                in_channels, _channels(res, self.channel_base, self.channel_max), self.w_dim, res,
                self.img_channels, is_last=res == self.img_resolution,
                architecture=self.architecture, resample_filter=self.resample_filter,
                conv_clamp=self.conv_clamp, use_fp16=res >= fp16_res,
                fp16_channels_last=self.fp16_channels_last, kernel_size=self.kernel_size,
                use_noise=self.use_noise, activation=self.activation,
                reduced_dtype=self.reduced_dtype, name=f"b{res}",
            )
            count = block.num_conv + block.num_torgb
            flags = None if noisy is None else [w_idx + i in noisy for i in range(block.num_conv)]
            x, img = block(x, img, ws[:, w_idx:w_idx + count], noise_mode, fused_modconv,
                           force_fp32, flags)
            w_idx += block.num_conv
        return img


def freeze_kwargs(kwargs: Mapping[str, Any] | None) -> FrozenDict:
    """Constructor kwargs as a hashable mapping; lists (filters) become tuples."""
    def fix(v):
        if isinstance(v, list | tuple):
            return tuple(fix(e) for e in v)
        if isinstance(v, Mapping):
            return freeze_kwargs(v)
        return v
    return FrozenDict({k: fix(v) for k, v in (kwargs or {}).items()})


class GeneratorBase(nn.Module):
    """Mapping + synthesis shared by the StyleGAN2 and StyleGAN3 generators.

    `G.apply(vars, z, c, truncation_psi=...)` -> images NHWC; `method=G.map` /
    `method=G.synthesize` run one half. Subclasses build `self.mapping` and `self.synthesis` in
    `setup` and define `num_ws`.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    mapping_kwargs: Mapping[str, Any] = FrozenDict()
    synthesis_kwargs: Mapping[str, Any] = FrozenDict()

    def map(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_emas=False):
        """z `[N, z_dim]`, c `[N, c_dim]` -> ws `[N, num_ws, w_dim]`."""
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas)

    def synthesize(self, ws, **synthesis_kwargs):
        """ws `[N, num_ws, w_dim]` -> float32 images `[N, R, R, C]`."""
        return self.synthesis(ws, **synthesis_kwargs)

    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_emas=False,
                 **synthesis_kwargs):
        ws = self.map(z, c, truncation_psi, truncation_cutoff, update_emas)
        return self.synthesize(ws, update_emas=update_emas, **synthesis_kwargs)


class Generator(GeneratorBase):
    """StyleGAN2 generator; `mapping_kwargs` / `synthesis_kwargs` take the official names (see
    `MappingNetwork` and `SynthesisNetwork`)."""

    def setup(self):
        self.synthesis = SynthesisNetwork(
            w_dim=self.w_dim, img_resolution=self.img_resolution, img_channels=self.img_channels,
            **freeze_kwargs(self.synthesis_kwargs))
        self.mapping = MappingNetwork(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                                      num_ws=self.num_ws, **freeze_kwargs(self.mapping_kwargs))

    @property
    def num_ws(self) -> int:
        return synthesis_num_ws(self.img_resolution)


# ----------------------------------------------------------------------------- discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB), conv, 2x down conv, (resnet skip)."""

    in_channels: int  # 0 = first block.
    tmp_channels: int
    out_channels: int
    resolution: int
    img_channels: int
    first_layer_idx: int
    architecture: str = "resnet"
    activation: str = "lrelu"
    resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER
    conv_clamp: float | None = None
    use_fp16: bool = False
    fp16_channels_last: bool = False
    freeze_layers: int = 0
    reduced_dtype: Any = None

    @nn.compact
    def __call__(
        self, x: jax.Array | None, img: jax.Array | None, force_fp32: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        """`x [N, R, R, in]`, `img [N, R, R, img_channels]` -> `(x [N, R/2, R/2, out], img)`."""
        _check_architecture(self.architecture)
        dtype = (self.reduced_dtype or default_reduced_dtype()) if (
            self.use_fp16 and not force_fp32) else jnp.float32
        layer_idx = iter(range(self.first_layer_idx, self.first_layer_idx + 4))

        def layer(features, kernel_size, name, **kwargs):
            trainable = next(layer_idx) >= self.freeze_layers
            return Conv2dLayer(features, kernel_size, trainable=trainable, name=name, **kwargs)

        if x is not None:
            _check_shape("block input", x, (None, self.resolution, self.resolution,
                                             self.in_channels))
            x = x.astype(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            _check_shape("image", img, (None, self.resolution, self.resolution,
                                        self.img_channels))
            img = img.astype(dtype)
            y = layer(self.tmp_channels, 1, "fromrgb", activation=self.activation,
                      conv_clamp=self.conv_clamp)(img)
            x = y if x is None else x + y
            img = (downsample2d(img, setup_filter(self.resample_filter))
                   if self.architecture == "skip" else None)

        conv0 = layer(self.tmp_channels, 3, "conv0", activation=self.activation,
                      conv_clamp=self.conv_clamp)
        conv1 = layer(self.out_channels, 3, "conv1", activation=self.activation, down=2,
                      resample_filter=self.resample_filter, conv_clamp=self.conv_clamp)
        if self.architecture == "resnet":
            skip = layer(self.out_channels, 1, "skip", bias=False, down=2,
                         resample_filter=self.resample_filter)
            y = skip(x, gain=SQRT_HALF)
            x = conv1(conv0(x), gain=SQRT_HALF)
            x = y + x
        else:
            x = conv1(conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: (fromRGB), minibatch stddev, conv, fc, out, label projection."""

    in_channels: int
    cmap_dim: int
    resolution: int
    img_channels: int
    architecture: str = "resnet"
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    activation: str = "lrelu"
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, img: jax.Array | None, cmap: jax.Array | None) -> jax.Array:
        """`x [N, 4, 4, C]` -> logits `[N, 1]` (projected onto `cmap [N, cmap_dim]`)."""
        _check_shape("epilogue input", x, (None, self.resolution, self.resolution,
                                           self.in_channels))
        x = x.astype(jnp.float32)
        if self.architecture == "skip":
            x = x + Conv2dLayer(self.in_channels, 1, activation=self.activation,
                                name="fromrgb")(img.astype(jnp.float32))
        if self.mbstd_num_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = Conv2dLayer(self.in_channels, 3, activation=self.activation,
                        conv_clamp=self.conv_clamp, name="conv")(x)
        # Flatten in NCHW order so that `fc.weight` keeps the official layout.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = FullyConnectedLayer(self.in_channels, activation=self.activation, name="fc")(x)
        x = FullyConnectedLayer(1 if self.cmap_dim == 0 else self.cmap_dim, name="out")(x)
        if self.cmap_dim > 0:
            _check_shape("cmap", cmap, (None, self.cmap_dim))
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Images `[N, R, R, C]` in [-1, 1] (and labels) -> logits `[N, 1]`.

    `block_kwargs` / `mapping_kwargs` / `epilogue_kwargs` take the official names.
    """

    c_dim: int
    img_resolution: int
    img_channels: int
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    cmap_dim: int | None = None
    block_kwargs: Mapping[str, Any] = FrozenDict()
    mapping_kwargs: Mapping[str, Any] = FrozenDict()
    epilogue_kwargs: Mapping[str, Any] = FrozenDict()
    reduced_dtype: Any = None

    @nn.compact
    def __call__(self, img: jax.Array, c: jax.Array | None = None,
                 force_fp32: bool = False) -> jax.Array:
        """Returns logits `[N, 1]`; block outputs via `apply(..., capture_intermediates=True)`."""
        _check_shape("image", img, (None, self.img_resolution, self.img_resolution,
                                    self.img_channels))
        resolutions = _block_resolutions(self.img_resolution)[::-1][:-1]  # R, ..., 8
        ch = lambda res: _channels(res, self.channel_base, self.channel_max)
        fp16_res = _fp16_resolution(self.img_resolution, self.num_fp16_res)
        cmap_dim = 0 if self.c_dim == 0 else (self.cmap_dim or ch(4))

        x = None
        layer_idx = 0
        for res in resolutions:
            block = DiscriminatorBlock(
                ch(res) if res < self.img_resolution else 0, ch(res), ch(res // 2), res,
                self.img_channels, layer_idx, architecture=self.architecture,
                conv_clamp=self.conv_clamp, use_fp16=res >= fp16_res,
                reduced_dtype=self.reduced_dtype, name=f"b{res}",
                **freeze_kwargs(self.block_kwargs))
            x, img = block(x, img, force_fp32)
            has_fromrgb = res == self.img_resolution or self.architecture == "skip"
            layer_idx += 2 + int(has_fromrgb) + int(self.architecture == "resnet")

        cmap = None
        if self.c_dim > 0:
            mapping = MappingNetwork(z_dim=0, c_dim=self.c_dim, w_dim=cmap_dim, num_ws=None,
                                     w_avg_beta=None, name="mapping",
                                     **freeze_kwargs(self.mapping_kwargs))
            cmap = mapping(None, c)
        x = DiscriminatorEpilogue(ch(4), cmap_dim, 4, self.img_channels,
                                  architecture=self.architecture, conv_clamp=self.conv_clamp,
                                  name="b4", **freeze_kwargs(self.epilogue_kwargs))(x, img, cmap)
        return x

