"""Feature statistics: streaming float64 mean / covariance, and an on-disk cache for datasets.

The official ``FeatureStats`` accumulates ``sum x`` and ``sum x x^T`` in float64 and returns the
population (biased) moments

    mu = sum(x) / n,        sigma = sum(x x^T) / n - mu mu^T.

:class:`Moments` is that accumulator as an immutable pytree with pure update/merge functions.
Dataset statistics are cached as ``.npz`` under ``<cache_dir>/gan-metrics/``, keyed by the
source's content name, resolution, flip, item count and detector, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import flax.struct
import numpy as np

from flaxgan import files
from flaxgan.metrics.features import Extractor, ImageSource, iterate_features
from flaxgan.metrics.inception import default_cache_dir

__all__ = [
    'Moments',
    'cache_path',
    'cached',
    'dataset_features',
    'dataset_moments',
    'mean_cov',
    'moments_init',
    'moments_merge',
    'moments_update',
]


@flax.struct.dataclass
class Moments:
    """Raw float64 moments of ``num_items`` feature vectors of dimension ``D``.

    Attributes:
      num_items: scalar count ``n``.
      sum: ``[D]`` float64, ``sum_i x_i``.
      outer: ``[D, D]`` float64, ``sum_i x_i x_i^T``.
    """

    num_items: np.ndarray
    sum: np.ndarray
    outer: np.ndarray


def moments_init(dim: int) -> Moments:
    """Empty moments for ``dim``-dimensional features."""
    return Moments(np.int64(0), np.zeros([dim], np.float64), np.zeros([dim, dim], np.float64))


def moments_update(m: Moments, x: np.ndarray) -> Moments:
    """Adds a batch ``x [B, D]`` (cast float32 -> float64, as the official)."""
    x64 = np.asarray(x, np.float32).astype(np.float64)
    return Moments(m.num_items + x64.shape[0], m.sum + x64.sum(axis=0), m.outer + x64.T @ x64)


def moments_merge(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two disjoint sets."""
    return Moments(a.num_items + b.num_items, a.sum + b.sum, a.outer + b.outer)


def mean_cov(m: Moments, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [D], sigma [D, D])`` float64: ``mu = sum/n``, ``sigma = outer/n - mu mu^T``.

    ``ddof=0`` is the official StyleGAN covariance; ``ddof=1`` scales it by ``n / (n - 1)`` to
    ``np.cov``'s (TTUR, pytorch-fid) -- about 0.2% of FID at 500 images, 0.002% at 50k.
    """
    n = int(m.num_items)
    if n <= ddof:
        raise ValueError(f'mean_cov of {n} items with ddof={ddof}')
    mu = m.sum / n
    sigma = m.outer / n - np.outer(mu, mu)
    return mu, sigma * (n / (n - ddof)) if ddof else sigma


# ---------------------------------------------------------------------------------------------
# Cache.
# ---------------------------------------------------------------------------------------------


def cache_path(source: ImageSource, detector: str, kind: str, max_items: int | None,
               cache_dir: str | None = None) -> str:
    """``<cache_dir>/gan-metrics/<source>-<detector>-<kind>-<md5 of the key>.npz``.

    The key: source name (content digest), resolution, xflip, number of items, detector, kind.
    """
    num = source.num_images if max_items is None else (
        max_items if source.num_images is None else min(max_items, source.num_images))
    key = dict(source=source.name, resolution=source.resolution, xflip=source.xflip,
               num_items=num, detector=detector, kind=kind)
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()
    directory = os.path.join(cache_dir or default_cache_dir(), 'gan-metrics')
    return os.path.join(directory, f'{source.name}-{detector}-{kind}-{digest}.npz')


def cached(path: str | None, compute: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """Loads ``path`` if it exists, else ``compute()`` and saves it there atomically."""
    if path is not None and os.path.isfile(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = compute()
    if path is not None:
        files.save_npz(path, arrays)
    return arrays


def _maybe_path(source: ImageSource, extract: Extractor, kind: str, max_items: int | None,
                cache_dir: str | None, use_cache: bool) -> str | None:
    if not (use_cache and source.cacheable):
        return None
    return cache_path(source, extract.name, kind, max_items, cache_dir)


def dataset_moments(source: ImageSource, extract: Extractor, max_items: int | None = None,
                    cache_dir: str | None = None, use_cache: bool = True,
                    progress: bool = True) -> Moments:
    """Streaming float64 moments of the features of ``source`` (cached for datasets).

    Derived from the cached features when :func:`dataset_features` already extracted them.
    """
    def compute() -> dict[str, np.ndarray]:
        m = None
        for feats in iterate_features(source, extract, max_items, progress=progress):
            m = moments_update(moments_init(feats.shape[1]) if m is None else m, feats)
        if m is None:
            raise ValueError(f'{source.name}: no images')
        return dict(num_items=m.num_items, sum=m.sum, outer=m.outer)

    path = _maybe_path(source, extract, 'moments', max_items, cache_dir, use_cache)
    feats_path = _maybe_path(source, extract, 'features', max_items, cache_dir, use_cache)
    if path and not os.path.isfile(path) and feats_path and os.path.isfile(feats_path):
        feats = cached(feats_path, compute)['features']  # already extracted: no second pass
        m = moments_update(moments_init(feats.shape[1]), feats)
        d = cached(path, lambda: dict(num_items=m.num_items, sum=m.sum, outer=m.outer))
    else:
        d = cached(path, compute)
    return Moments(np.int64(d['num_items']), d['sum'], d['outer'])


def dataset_features(source: ImageSource, extract: Extractor, max_items: int | None = None,
                     cache_dir: str | None = None, use_cache: bool = True,
                     progress: bool = True) -> np.ndarray:
    """All features ``[N, D]`` float32 of ``source`` (cached for datasets)."""
    def compute() -> dict[str, np.ndarray]:
        feats = list(iterate_features(source, extract, max_items, progress=progress))
        if not feats:
            raise ValueError(f'{source.name}: no images')
        return dict(features=np.concatenate(feats).astype(np.float32))

    path = _maybe_path(source, extract, 'features', max_items, cache_dir, use_cache)
    return cached(path, compute)['features']
