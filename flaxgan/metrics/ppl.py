"""Perceptual path length (Karras et al. 2019), the official StyleGAN2-ADA / StyleGAN3 procedure.

For each sample: ``z0, z1 ~ N(0, I)``, ``t ~ U(0, 1)`` (``sampling='full'``) or ``t = 0``
(``'end'``); two latents ``eps = 1e-4`` apart along the path (slerp in Z, lerp in W), one image
each with the same noise (the official randomises the ``noise_const`` buffers per batch and
synthesises with ``noise_mode='const'``); optional face crop (rows ``3c:7c``, columns ``2c:6c``,
``c = H / 8``); box-downsample to 256; scale ``[-1, 1] -> [0, 255]``; then

    d = ||lpips(img_t) - lpips(img_t+eps)||^2 / eps^2,

and PPL is the mean of the ``d`` between the 1st ('lower') and 99th ('higher') percentiles.

The generator and LPIPS enter as functions, so this module is independent of the model code:
``mapping(z [B, z_dim], c [B, c_dim]) -> ws [B, num_ws, w_dim]``, ``synthesis(ws, key) ->
[B, H, W, C]`` in ``[-1, 1]`` with noise drawn from ``key`` and shared by the whole batch, and
``lpips_features(images [B, H, W, 3] in [0, 255]) -> [B, F]`` whose squared difference is the
LPIPS-VGG16 distance (the official ``vgg16(..., return_lpips=True)``;
:func:`flaxgan.metrics.vgg16.lpips_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from flaxgan import xla_cpu
from flaxgan.metrics.features import class_labels
from flaxgan.train.sharding import BATCH_AXIS, make_mesh

__all__ = ['LatentGenerator', 'crop_and_scale', 'filtered_mean', 'pair_distances',
           'pair_latents', 'ppl', 'ppl_distances', 'slerp']


class LatentGenerator(NamedTuple):
    """A generator as PPL sees it (pure, jittable functions).

    Attributes:
      mapping: ``(z [B, z_dim], c [B, c_dim]) -> ws [B, num_ws, w_dim]`` (psi 1).
      synthesis: ``(ws, key) -> images [B, H, W, C]`` in [-1, 1], noise from ``key`` shared by
        the whole batch (the official randomised ``noise_const`` + ``noise_mode='const'``).
      z_dim: latent size.
      c_dim: label size (0: unconditional); the two ends of a pair share one class.
      class_probs: ``[c_dim]`` class distribution the pairs' classes are drawn from (the
        dataset's, `data_pipelines.input.class_frequencies`); None: uniform.
    """

    mapping: Callable[[jax.Array, jax.Array], jax.Array]
    synthesis: Callable[[jax.Array, jax.Array], jax.Array]
    z_dim: int
    c_dim: int = 0
    class_probs: tuple[float, ...] | None = None


def slerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
    """Spherical interpolation of the directions of ``a``, ``b`` ``[B, D]`` at ``t [B, 1]``.

    ``a, b`` normalised; ``c = normalise(b - (a.b) a)``; ``normalise(a cos(t theta) +
    c sin(t theta))`` with ``theta = acos(a.b)`` -- a unit vector.
    """
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    d = jnp.sum(a * b, axis=-1, keepdims=True)
    p = t * jnp.arccos(d)
    c = b - d * a
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    out = a * jnp.cos(p) + c * jnp.sin(p)
    return out / jnp.linalg.norm(out, axis=-1, keepdims=True)


def pair_latents(key: jax.Array, batch: int, z_dim: int, mapping: Callable, space: str,
                 sampling: str, epsilon: float, c_dim: int = 0,
                 class_probs: Sequence[float] | None = None) -> tuple[jax.Array, jax.Array]:
    """``(ws_t, ws_t+eps)``, each ``[B, num_ws, w_dim]``, as the official ``PPLSampler``."""
    if space not in ('z', 'w') or sampling not in ('full', 'end'):
        raise ValueError(f'space must be z|w and sampling full|end, got {space!r}, {sampling!r}')
    t_key, z_key, c_key = jax.random.split(key, 3)
    t = jax.random.uniform(t_key, (batch,)) * (1.0 if sampling == 'full' else 0.0)
    z0, z1 = jnp.split(jax.random.normal(z_key, (2 * batch, z_dim)), 2)
    c = class_labels(c_key, batch, c_dim, class_probs)
    c2 = jnp.concatenate([c, c])  # both ends of a pair (and both interpolants) share the class
    if space == 'w':
        w0, w1 = jnp.split(mapping(jnp.concatenate([z0, z1]), c2), 2)
        lerp = lambda s: w0 + (w1 - w0) * s[:, None, None]
        return lerp(t), lerp(t + epsilon)
    zt0, zt1 = slerp(z0, z1, t[:, None]), slerp(z0, z1, t[:, None] + epsilon)
    return tuple(jnp.split(mapping(jnp.concatenate([zt0, zt1]), c2), 2))


def crop_and_scale(images: jax.Array, crop: bool) -> jax.Array:
    """``[B, H, W, C]`` in [-1, 1] -> face crop, box-downsample, [0, 255], 3 channels.

    The downsampling factor is ``H // 256`` of the *uncropped* image, as the official
    (``img_resolution // 256``): a cropped 1024 image ends at 128x128.
    """
    factor = images.shape[1] // 256
    if crop:
        if images.shape[1] != images.shape[2]:
            raise ValueError(f'face crop needs square images, got {images.shape}')
        c = images.shape[1] // 8
        images = images[:, 3 * c:7 * c, 2 * c:6 * c]
    if factor > 1:
        b, h, w, ch = images.shape
        images = images.reshape(b, h // factor, factor, w // factor, factor, ch).mean((2, 4))
    images = (images + 1) * (255 / 2)
    return jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def pair_distances(ws0: jax.Array, ws1: jax.Array, noise_key: jax.Array, synthesis: Callable,
                   lpips_features: Callable, epsilon: float = 1e-4, crop: bool = True
                   ) -> jax.Array:
    """``[B]`` ``||f(G(ws0)) - f(G(ws1))||^2 / eps^2`` with one noise for the whole batch."""
    images = synthesis(jnp.concatenate([ws0, ws1]), noise_key)
    f0, f1 = jnp.split(lpips_features(crop_and_scale(images, crop)), 2)
    return jnp.sum(jnp.square(f0 - f1), axis=1) / epsilon**2


def ppl_distances(key: jax.Array, batch: int, z_dim: int, mapping: Callable,
                  synthesis: Callable, lpips_features: Callable, space: str, sampling: str,
                  epsilon: float = 1e-4, crop: bool = True, c_dim: int = 0,
                  class_probs: Sequence[float] | None = None) -> jax.Array:
    """``[B]`` differential LPIPS distances ``||f(img_t) - f(img_t+eps)||^2 / eps^2``."""
    lat_key, noise_key = jax.random.split(key)
    ws0, ws1 = pair_latents(lat_key, batch, z_dim, mapping, space, sampling, epsilon, c_dim,
                            class_probs)
    return pair_distances(ws0, ws1, noise_key, synthesis, lpips_features, epsilon, crop)


def filtered_mean(dist: np.ndarray) -> float:
    """Mean of the distances within the [1st 'lower', 99th 'higher'] percentiles."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


def ppl(mapping: Callable, synthesis: Callable, lpips_features: Callable, z_dim: int,
        num_samples: int = 50000, epsilon: float = 1e-4, space: str = 'w',
        sampling: str = 'end', crop: bool = True, batch_size: int = 16, seed: int = 0,
        progress: bool = True, c_dim: int = 0, mesh: Mesh | None = None,
        class_probs: Sequence[float] | None = None) -> float:
    """The PPL metric (official ``ppl_{z,w}{full,end}``: crop True; ``ppl2_wend``: crop False).

    Conditional generators (``c_dim > 0``): each pair's class is drawn from ``class_probs``
    (the dataset's class frequencies, as the official; None: uniform).

    Batch ``i`` of ``batch_size`` pairs (rounded up to a multiple of the device count) uses
    ``fold_in(key(seed), i)``: its latents and its one noise are drawn for the whole batch,
    then synthesis and LPIPS run data-parallel over ``mesh`` (default: all local devices), so
    the value does not depend on the device count.
    """
    mesh = make_mesh(local=True) if mesh is None else mesh
    batch_size = -(-batch_size // mesh.size) * mesh.size
    local = lambda ws0, ws1, k: pair_distances(ws0, ws1, k, synthesis, lpips_features, epsilon,
                                               crop)

    @xla_cpu.jit
    def step(key):
        lat_key, noise_key = jax.random.split(key)
        ws0, ws1 = pair_latents(lat_key, batch_size, z_dim, mapping, space, sampling, epsilon,
                                c_dim, class_probs)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(BATCH_AXIS), P(BATCH_AXIS), P()),
                             out_specs=P(BATCH_AXIS))(ws0, ws1, noise_key)

    key = jax.random.key(seed)
    dist = []
    for i in tqdm(range(-(-num_samples // batch_size)), desc='ppl', disable=not progress,
                  leave=False):
        dist.append(np.asarray(step(jax.random.fold_in(key, i))))
    return filtered_mean(np.concatenate(dist)[:num_samples])
