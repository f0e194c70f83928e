"""Kernel Inception Distance (Bińkowski et al. 2018), the official StyleGAN estimator.

Unbiased MMD^2 with the cubic polynomial kernel ``k(a, b) = (a.b / D + 1)^3``, averaged over
``num_subsets`` random subsets of size ``m = min(N_gen, N_real, max_subset_size)`` drawn without
replacement (generated then real, per subset, from ``np.random.RandomState(seed)``)::

    t_s = [sum_{i!=j} k(x_i, x_j) + k(y_i, y_j)] / (m - 1) - 2 / m * sum_{i,j} k(x_i, y_j)
    KID = sum_s t_s / num_subsets / m

Kernel matrices are formed on device in float32 (full precision matmuls) and reduced per row
there; the cancellation-prone totals are finished in float64 on the host. The official sums the
whole matrices in float32, which quantises a single-subset ``t_s`` at about 0.1%.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import xla_cpu

__all__ = ['kid', 'subset_indices']


def subset_indices(n_gen: int, n_real: int, num_subsets: int, m: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Official subset draws: per subset ``choice(n_gen, m)`` then ``choice(n_real, m)``.

    Returns int ``[num_subsets, m]`` index arrays into the generated and the real features.
    """
    rng = np.random.RandomState(seed)
    gen, real = [], []
    for _ in range(num_subsets):
        gen.append(rng.choice(n_gen, m, replace=False))
        real.append(rng.choice(n_real, m, replace=False))
    return np.stack(gen), np.stack(real)


@functools.partial(xla_cpu.jit, static_argnames=('precision',))
def _row_sums(gen: jax.Array, real: jax.Array, idx_gen: jax.Array, idx_real: jax.Array,
              precision: jax.lax.Precision = jax.lax.Precision.HIGHEST) -> jax.Array:
    """Per subset and row: ``[S, 3, m]`` = (rowsum k(x,x) + k(y,y), its diagonal, rowsum k(x,y))."""
    dim = gen.shape[1]
    kernel = lambda a, b: (jnp.dot(a, b.T, precision=precision) / dim + 1) ** 3

    def one(idx):
        x, y = gen[idx[0]], real[idx[1]]
        a = kernel(x, x) + kernel(y, y)
        return jnp.stack([a.sum(axis=1), jnp.diagonal(a), kernel(x, y).sum(axis=1)])

    return jax.lax.map(one, jnp.stack([idx_gen, idx_real], axis=1))


def kid(gen_features: np.ndarray, real_features: np.ndarray, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID between generated ``[N_gen, D]`` and real ``[N_real, D]`` features.

    Args:
      gen_features, real_features: float32 feature matrices.
      num_subsets: number of random subsets (official 100).
      max_subset_size: subset size cap (official 1000).
      seed: seed of the subset draws.
    Returns:
      The KID estimate (a float; can be slightly negative).
    """
    gen = np.asarray(gen_features, np.float32)
    real = np.asarray(real_features, np.float32)
    m = min(gen.shape[0], real.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 features per set, got {gen.shape[0]}, '
                         f'{real.shape[0]}')
    idx_gen, idx_real = subset_indices(gen.shape[0], real.shape[0], num_subsets, m, seed)
    sums = np.asarray(_row_sums(gen, real, idx_gen, idx_real)).astype(np.float64)
    a_sum, a_diag, b_sum = sums.sum(axis=2).T  # [S] each
    t = (a_sum - a_diag) / (m - 1) - b_sum * 2 / m
    return float(t.sum() / num_subsets / m)
