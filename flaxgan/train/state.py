"""The training state: one pytree holding everything a resumed run needs."""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from flaxgan import xla_cpu

__all__ = ["GanState", "init_variables", "create_state"]

Variables = dict[str, Any]


@flax.struct.dataclass
class GanState:
    """Networks, optimizer states and training progress (all arrays; replicated over devices).

    Attributes:
      g_params / g_buffers: generator parameters and buffers (`w_avg`, `noise_const`, StyleGAN3
        `magnitude_ema`, ...).
      d_params / d_buffers: discriminator parameters and buffers (frozen layers live in buffers).
      ema_params / ema_buffers: the generator's exponential moving average (what is sampled and
        evaluated; official `G_ema`).
      g_opt_state / d_opt_state: optax states.
      pl_mean: running mean of path lengths (path-length regularisation).
      ada_p: current augmentation probability.
      ada_signs: `[2]` float32, sum of `sign(D(real))` and their count since the last ADA update.
      nimg: real images shown so far (int32; 2^31 images is far beyond any schedule).
      step: minibatches done (official `batch_idx`).
      rng: base key as raw `uint32` key data (checkpoint-friendly; `jax.random.wrap_key_data`);
        each step folds in `step`, the phase and the device index.
    """

    g_params: Variables
    g_buffers: Variables
    d_params: Variables
    d_buffers: Variables
    ema_params: Variables
    ema_buffers: Variables
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    pl_mean: jax.Array
    ada_p: jax.Array
    ada_signs: jax.Array
    nimg: jax.Array
    step: jax.Array
    rng: jax.Array

    @property
    def g_variables(self) -> Variables:
        return {"params": self.g_params, "buffers": self.g_buffers}

    @property
    def d_variables(self) -> Variables:
        return {"params": self.d_params, "buffers": self.d_buffers}

    @property
    def ema_variables(self) -> Variables:
        return {"params": self.ema_params, "buffers": self.ema_buffers}


def init_variables(G: nn.Module, D: nn.Module, key: jax.Array, resolution: int,
                   channels: int, c_dim: int) -> tuple[Variables, Variables]:
    """Initial variables of G and D as the official constructors make them (batch of 1).

    One compiled program per (G, D, shapes): initialising op by op would compile hundreds of
    one-operation programs on the first call.
    """
    return _init_variables(G, D, key, resolution, channels, c_dim)


@functools.partial(xla_cpu.jit, static_argnums=(0, 1, 3, 4, 5))
def _init_variables(G: nn.Module, D: nn.Module, key: jax.Array, resolution: int,
                    channels: int, c_dim: int) -> tuple[Variables, Variables]:
    k_g, k_d = jax.random.split(key)
    z = jnp.zeros((1, G.z_dim), jnp.float32)
    c = jnp.zeros((1, c_dim), jnp.float32)
    img = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
    g_vars = G.init({"params": k_g}, z, c, noise_mode="const")
    d_vars = D.init({"params": k_d}, img, c)
    return dict(g_vars), dict(d_vars)


def create_state(g_variables: Variables, d_variables: Variables, g_optimizer:
                 optax.GradientTransformation, d_optimizer: optax.GradientTransformation,
                 key: jax.Array, ada_p: float = 0.0,
                 ema_variables: Variables | None = None) -> GanState:
    """A fresh state from network variables (e.g. `init_variables` or an imported snapshot).

    `ema_variables` (an imported snapshot's G_ema) default to a copy of G's variables.
    """
    g_params, g_buffers = g_variables["params"], g_variables.get("buffers", {})
    d_params, d_buffers = d_variables["params"], d_variables.get("buffers", {})
    ema = ema_variables if ema_variables is not None else g_variables
    return GanState(
        g_params=g_params, g_buffers=g_buffers, d_params=d_params, d_buffers=d_buffers,
        ema_params=jax.tree.map(jnp.copy, ema["params"]),
        ema_buffers=jax.tree.map(jnp.copy, ema.get("buffers", {})),
        g_opt_state=g_optimizer.init(g_params), d_opt_state=d_optimizer.init(d_params),
        pl_mean=jnp.zeros((), jnp.float32), ada_p=jnp.asarray(ada_p, jnp.float32),
        ada_signs=jnp.zeros((2,), jnp.float32), nimg=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(key))
