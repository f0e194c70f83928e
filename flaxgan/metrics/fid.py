"""Fréchet Inception Distance (Heusel et al. 2017), as the official StyleGAN metrics compute it.

    FID = ||mu_g - mu_r||^2 + Tr(sigma_g + sigma_r - 2 sqrtm(sigma_g sigma_r))

in float64, with ``scipy.linalg.sqrtm`` of the (non-symmetric) product and the real part taken
at the end.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

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
    s = scipy.linalg.sqrtm(np.dot(sigma1, sigma2))  # may be complex; real part taken below
    return float(np.real(m + np.trace(sigma1 + sigma2 - s * 2)))


def fid_from_moments(gen: Moments, real: Moments, ddof: int = 0) -> float:
    """FID between two sets of feature moments (generated first, as the official).

    ``ddof=0``: the official population covariance; ``ddof=1``: ``np.cov``'s (see ``mean_cov``).
    """
    mu_g, sigma_g = mean_cov(gen, ddof)
    mu_r, sigma_r = mean_cov(real, ddof)
    return frechet_distance(mu_g, sigma_g, mu_r, sigma_r)
