"""The adaptive augmentation probability of ADA (paper sec. 3; the official training loop)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["real_sign_stats", "ada_update"]

# ---------------------------------------------------------------------------------------------
# Adaptive p (paper sec. 3; official training loop).


def real_sign_stats(real_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(Σ sign(D(x)), count)` of a batch of real logits, to accumulate between ADA updates.

    The official accumulates the signs of every real-image logit that D computes in the
    interval (its main phase and its R1 phase), summed over all devices.
    """
    return jnp.sum(jnp.sign(real_logits)), jnp.asarray(real_logits.size, jnp.float32)


def ada_update(p: jax.Array | float, sign_sum: jax.Array | float, count: jax.Array | float,
               batch_size: int, interval: int = 4, target: float | None = 0.6,
               ada_kimg: float = 500.0) -> tuple[jax.Array, jax.Array]:
    """One ADA adjustment, made every `interval` steps.

    r_t = E[sign(D(x_real))] over the interval;
    p <- max(p + sign(r_t - target) · batch_size · interval / (ada_kimg · 1000), 0),
    so p can move by 1 in `ada_kimg` thousand images (p has no upper clamp, as the official).

    Args:
      p: current probability (scalar).
      sign_sum, count: accumulated `real_sign_stats` since the last adjustment.
      batch_size: images per step over all devices.
      interval: steps between adjustments (official 4).
      target: r_t target (official 0.6); None = fixed p (p returned unchanged).
      ada_kimg: speed (official 500; train.py uses 100 when resuming from a snapshot).

    Returns:
      `(p_new, r_t)`, float32 scalars; with `count == 0`, r_t is NaN and p is unchanged.
    """
    p = jnp.asarray(p, jnp.float32)
    count = jnp.asarray(count, jnp.float32)
    r_t = jnp.where(count > 0, jnp.asarray(sign_sum, jnp.float32) / jnp.maximum(count, 1), jnp.nan)
    if target is None:
        return p, r_t
    adjust = jnp.sign(r_t - target) * (batch_size * interval) / (ada_kimg * 1000)
    p_new = jnp.maximum(p + adjust, 0.0)
    return jnp.where(count > 0, p_new, p), r_t
