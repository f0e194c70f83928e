"""Equalized-learning-rate layers and small StyleGAN building blocks (Flax Linen, NHWC).

Weights are stored at unit variance (divided by the learning-rate multiplier) and scaled at
run time by `lr_multiplier / sqrt(fan_in)` (Karras et al. 2018, "equalized learning rate").
Layers whose weights are frozen (`trainable=False`, Freeze-D) keep them in the 'buffers'
collection instead of 'params', like the official module buffers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.nn.activation import activation_spec, bias_act
from flaxgan.nn.conv import conv2d_resample
from flaxgan.nn.fir import setup_filter

__all__ = [
    "FullyConnectedLayer",
    "Conv2dLayer",
    "normalize_2nd_moment",
    "minibatch_std",
]

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """`x / sqrt(mean(x^2) + eps)` along `axis` (pixel norm of the latent)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def at_least_float32(x: jax.Array) -> jax.Array:
    """`x` in float32, or in its own dtype when that is wider (float64): the statistics that
    float16 layers compute in float32 keep a float64 network's precision."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def minibatch_std(x: jax.Array, group_size: int | None = 4, num_channels: int = 1) -> jax.Array:
    """Appends minibatch standard-deviation features (Karras et al. 2018, sec. 3).

    Samples `i` and `i + k * N / G` form a group; the stddev over each group is averaged over
    pixels and the channels of each of the `num_channels` channel groups.

    Args:
      x: `[N, H, W, C]` with N divisible by the group size and C by `num_channels`.
      group_size: group size G (clipped to N); None = the whole minibatch.
      num_channels: number of stddev features F.

    Returns:
      `[N, H, W, C + F]`.
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g or c % num_channels:
        raise ValueError(
            f"minibatch_std: batch {n} must be divisible by group size {g} and channels {c} "
            f"by num_channels {num_channels}"
        )
    y = at_least_float32(x).reshape(g, n // g, h, w, num_channels, c // num_channels)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n, F]
    y = jnp.tile(y[:, None, None, :], (g, h, w, 1)).astype(x.dtype)  # [N, H, W, F]
    return jnp.concatenate([x, y], axis=-1)


def _weight(module: nn.Module, trainable: bool, name: str, init, shape) -> jax.Array:
    """A trainable parameter, or a frozen one kept in the 'buffers' collection."""
    if trainable:
        return module.param(name, init, shape)
    return module.variable("buffers", name, lambda: init(module.make_rng("params"), shape)).value


class FullyConnectedLayer(nn.Module):
    """Equalized-lr dense layer; `weight` is `[in, out]`.

    Attributes mirror the official `FullyConnectedLayer`: `features` (out_features), `bias`,
    `activation`, `lr_multiplier`, `bias_init` (a scalar or one value per output),
    `weight_init` (initial weight std, StyleGAN3).
    """

    features: int
    bias: bool = True
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float | tuple[float, ...] = 0.0
    weight_init: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """`x [N, in] -> [N, out]`."""
        in_features = x.shape[-1]
        weight = self.param(
            "weight",
            lambda key, shape: jax.random.normal(key, shape) * (
                self.weight_init / self.lr_multiplier),
            (in_features, self.features),
        )
        w = weight.astype(x.dtype) * (self.lr_multiplier / np.sqrt(in_features))
        x = x @ w
        b = None
        if self.bias:
            b = self.param("bias", lambda _, shape: jnp.broadcast_to(
                jnp.asarray(self.bias_init, jnp.float32), shape), (self.features,))
            b = b.astype(x.dtype) * self.lr_multiplier
        return bias_act(x, b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution with optional FIR up/down-sampling; `weight` is HWIO.

    Attributes mirror the official `Conv2dLayer`.
    """

    features: int
    kernel_size: int
    bias: bool = True
    activation: str = "linear"
    up: int = 1
    down: int = 1
    resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER
    conv_clamp: float | None = None
    trainable: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
        """`x [N, H, W, C_in] -> [N, H * up / down, W * up / down, features]`."""
        in_channels = x.shape[-1]
        k = self.kernel_size
        weight = _weight(self, self.trainable, "weight", jax.random.normal,
                         (k, k, in_channels, self.features))
        w = weight * (1 / np.sqrt(in_channels * k * k))
        x = conv2d_resample(
            x, w.astype(x.dtype), f=setup_filter(self.resample_filter), up=self.up,
            down=self.down, padding=k // 2, flip_weight=(self.up == 1),
        )
        b = None
        if self.bias:
            b = _weight(self, self.trainable, "bias", nn.initializers.zeros, (self.features,))
        act_gain = activation_spec(self.activation).default_gain * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=clamp)
