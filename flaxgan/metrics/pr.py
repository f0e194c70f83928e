"""Improved precision and recall (Kynkäänniemi et al. 2019), the official StyleGAN procedure.

Each set's manifold is the union of balls around its features with radius the distance to the
``k``-th nearest neighbour (``k = nhood_size``, self excluded, i.e. the ``(k+1)``-th smallest
distance including the zero to itself). Then

    precision = mean over generated g of [exists real r: ||g - r|| <= radius_real(r)]
    recall    = mean over real r of      [exists generated g: ||r - g|| <= radius_gen(g)]

The official evaluates in float16 (features, distances and radii); ``half=True`` rounds features
and distances to float16 likewise, computing the distances themselves in float32. Distances are
evaluated on device in row batches, streaming over column batches (memory ``row x col``).
Note: the official ``pr50k3*`` metrics use VGG16 features, not Inception.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import xla_cpu

__all__ = ['knn_radii', 'manifold_coverage', 'pairwise_distances', 'precision_recall']

_HIGHEST = jax.lax.Precision.HIGHEST


def pairwise_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """Euclidean distances ``[R, C]`` between rows of ``a [R, D]`` and ``b [C, D]`` (float32).

    ``sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))``, the matmul form of ``torch.cdist``.
    """
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    sq = (jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :]
          - 2 * jnp.dot(a, b.T, precision=_HIGHEST))
    return jnp.sqrt(jnp.maximum(sq, 0))


def _round(d: jax.Array, half: bool) -> jax.Array:
    return d.astype(jnp.float16).astype(jnp.float32) if half else d


def _col_chunks(cols: jax.Array, col_batch: int) -> tuple[jax.Array, jax.Array]:
    """``[C, D]`` -> ``([K, col_batch, D], valid [K, col_batch])`` zero-padded chunks."""
    c = cols.shape[0]
    k = -(-c // col_batch)
    pad = k * col_batch - c
    chunks = jnp.pad(cols, ((0, pad), (0, 0))).reshape(k, col_batch, cols.shape[1])
    valid = (jnp.arange(k * col_batch) < c).reshape(k, col_batch)
    return chunks, valid


@functools.partial(xla_cpu.jit, static_argnames=('k', 'col_batch', 'half'))
def _kth_smallest(rows: jax.Array, cols: jax.Array, k: int, col_batch: int,
                  half: bool) -> jax.Array:
    """``[R]`` k-th smallest distance from each row to ``cols`` (running top-k over chunks)."""
    chunks, valid = _col_chunks(cols, col_batch)

    def step(best, chunk):
        c, v = chunk
        d = jnp.where(v[None, :], _round(pairwise_distances(rows, c), half), jnp.inf)
        merged = jnp.concatenate([best, d], axis=1)
        return -jax.lax.top_k(-merged, k)[0], None

    init = jnp.full((rows.shape[0], k), jnp.inf, jnp.float32)
    best, _ = jax.lax.scan(step, init, (chunks, valid))
    return best[:, k - 1]


@functools.partial(xla_cpu.jit, static_argnames=('col_batch', 'half'))
def _covered(probes: jax.Array, manifold: jax.Array, radii: jax.Array, col_batch: int,
             half: bool) -> jax.Array:
    """``[P]`` bool: whether each probe lies within some manifold ball."""
    chunks, valid = _col_chunks(manifold, col_batch)
    r_chunks = jnp.pad(radii, (0, chunks.shape[0] * col_batch - radii.shape[0]),
                       constant_values=-jnp.inf).reshape(chunks.shape[0], col_batch)

    def step(hit, chunk):
        c, v, r = chunk
        d = _round(pairwise_distances(probes, c), half)
        return hit | jnp.any((d <= r[None, :]) & v[None, :], axis=1), None

    hit, _ = jax.lax.scan(step, jnp.zeros(probes.shape[0], bool), (chunks, valid, r_chunks))
    return hit


def _prepare(x: np.ndarray, half: bool) -> jax.Array:
    x = np.asarray(x, np.float32)
    return jnp.asarray(x.astype(np.float16).astype(np.float32) if half else x)


def knn_radii(features: np.ndarray, nhood_size: int = 3, row_batch: int = 1024,
              col_batch: int = 8192, half: bool = True) -> np.ndarray:
    """``[N]`` distance of each feature to its ``nhood_size``-th nearest other feature."""
    x = _prepare(features, half)
    cb = min(col_batch, x.shape[0])
    out = [_kth_smallest(x[i:i + row_batch], x, nhood_size + 1, cb, half)
           for i in range(0, x.shape[0], row_batch)]
    return np.asarray(jnp.concatenate(out))


def manifold_coverage(probes: np.ndarray, manifold: np.ndarray, radii: np.ndarray,
                      row_batch: int = 1024, col_batch: int = 8192,
                      half: bool = True) -> np.ndarray:
    """``[P]`` bool: probe ``i`` within ``radii[j]`` of some ``manifold[j]``."""
    p, m = _prepare(probes, half), _prepare(manifold, half)
    r = jnp.asarray(radii, jnp.float32)
    cb = min(col_batch, m.shape[0])
    out = [_covered(p[i:i + row_batch], m, r, cb, half) for i in range(0, p.shape[0], row_batch)]
    return np.asarray(jnp.concatenate(out))


def precision_recall(gen_features: np.ndarray, real_features: np.ndarray, nhood_size: int = 3,
                     row_batch: int = 1024, col_batch: int = 8192,
                     half: bool = True) -> tuple[float, float]:
    """``(precision, recall)`` of generated vs real features ``[N, D]``.

    Args:
      nhood_size: ``k`` of the k-NN radii (official 3).
      row_batch, col_batch: distance-matrix tile (memory ``row_batch x col_batch`` floats).
      half: emulate the official float16 evaluation.
    """
    results = []
    for manifold, probes in ((real_features, gen_features), (gen_features, real_features)):
        radii = knn_radii(manifold, nhood_size, row_batch, col_batch, half)
        results.append(float(np.mean(manifold_coverage(probes, manifold, radii, row_batch,
                                                       col_batch, half))))
    return results[0], results[1]
