"""Fused bias + activation + gain + clamp, as in StyleGAN2's `bias_act`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Activation", "ACTIVATIONS", "bias_act"]


class Activation(NamedTuple):
    """An activation with its default slope and the gain that keeps unit variance."""

    fn: Callable[[jax.Array, float], jax.Array]
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: jax.nn.relu(x), 0.0, float(np.sqrt(2))),
    "lrelu": Activation(lambda x, a: jnp.where(x >= 0, x, x * a), 0.2, float(np.sqrt(2))),
    "tanh": Activation(lambda x, a: jnp.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: jax.nn.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: jax.nn.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: jax.nn.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: jax.nn.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: jax.nn.sigmoid(x) * x, 0.0, float(np.sqrt(2))),
}


def activation_spec(act: str) -> Activation:
    """Looks up an activation by name, with a clear error for unknown names."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        known = sorted(ACTIVATIONS)
        raise ValueError(f"unknown activation {act!r}; expected one of {known}") from None


def bias_act(
    x: jax.Array,
    b: jax.Array | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> jax.Array:
    """Computes `clamp(act(x + b) * gain, -clamp, clamp)`.

    Args:
      x: `[..., C]` (channels last).
      b: bias `[C]` or None.
      act: activation name (see `ACTIVATIONS`).
      alpha: slope of 'lrelu' (default 0.2).
      gain: output scale; default: the activation's variance-preserving gain.
      clamp: clamp the result to [-clamp, clamp]; None disables.

    Returns:
      array shaped like `x`.
    """
    spec = activation_spec(act)
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if b is not None:
        x = x + b.astype(x.dtype)
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None:
        if clamp < 0:
            raise ValueError(f"clamp must be >= 0, got {clamp}")
        # Selects, not `jnp.clip`: clip's derivative (min/max split ties with a division) is
        # costly enough that XLA stores it as full-size masks when the gradient has several
        # consumers (the halves of filtered_lrelu's polyphase passes), 2 of 5 full-rate
        # buffers of an up-4 layer's VJP; a select's derivative is fused. Gradient 1 at
        # |x| = clamp, as torch's clamp.
        c = jnp.asarray(clamp, x.dtype)
        x = jnp.where(x > c, c, jnp.where(x < -c, -c, x))
    return x
