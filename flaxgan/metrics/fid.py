"""Fréchet Inception Distance (Heusel et al. 2017), as the official StyleGAN metrics compute it.

    FID = ||mu_g - mu_r||^2 + Tr(sigma_g + sigma_r - 2 sqrtm(sigma_g sigma_r))

in float64. The official takes ``scipy.linalg.sqrtm`` of the (non-symmetric) product and its
real trace; the trace alone is needed, and ``sigma_g sigma_r`` is similar to the symmetric
positive semi-definite ``sigma_g^½ sigma_r sigma_g^½``, so ``Tr sqrtm`` is the sum of the square
roots of that matrix's eigenvalues: two symmetric eigendecompositions instead of a Schur
square root, 6x faster at D = 2048 (2.2 vs 14 s on a 2-core CPU). Measured against the official
form: 1.5e-12 relative on full-rank covariances, ~2e-7 on the singular covariances of fewer
than D images (where the Schur root itself loses accuracy).
"""

from __future__ import annotations

import numpy as np

from flaxgan.metrics.stats import Moments, mean_cov

__all__ = ['fid_from_moments', 'frechet_distance']


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
      mu1, mu2: ``[D]`` means.
      sigma1, sigma2: ``[D, D]`` covariances.
    Returns:
      ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 @ sigma2))`` (real part), a float.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    m = np.square(mu1 - mu2).sum()
    return float(m + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * _trace_sqrtm_of_product(sigma1, sigma2))


def _trace_sqrtm_of_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr sqrtm(sigma1 @ sigma2)`` of two ``[D, D]`` covariances, from the eigenvalues of
    ``sigma1^½ sigma2 sigma1^½``. Eigenvalues that rounding makes slightly negative count as 0,
    as the official's real part of their imaginary roots."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def fid_from_moments(gen: Moments, real: Moments, ddof: int = 0) -> float:
    """FID between two sets of feature moments (generated first, as the official).

    ``ddof=0``: the official population covariance; ``ddof=1``: ``np.cov``'s (see ``mean_cov``).
    """
    mu_g, sigma_g = mean_cov(gen, ddof)
    mu_r, sigma_r = mean_cov(real, ddof)
    return frechet_distance(mu_g, sigma_g, mu_r, sigma_r)
