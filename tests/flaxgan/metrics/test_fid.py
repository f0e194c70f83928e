"""Fréchet distance and streaming moments."""

import numpy as np
import pytest
import scipy.linalg

from flaxgan.metrics import fid, stats
from tests.flaxgan.metrics.conftest import fid_of_samples


def _gaussian_features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


def _official_fid(x, y):
    """FID as the official metric code computes it: np.mean / np.cov (population) and the real
    part of scipy's matrix square root of the (non-symmetric) product."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    cross = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * cross)))


def _moments(x, batch=7):
    m = stats.moments_init(x.shape[1])
    for i in range(0, len(x), batch):
        m = stats.moments_update(m, x[i:i + batch])
    return m


def test_streaming_moments_match_numpy():
    x = _gaussian_features(101, 16, 0, shift=3.0)
    mu, sigma = stats.mean_cov(_moments(x))
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, bias=True),
                               atol=1e-10)


def test_moments_merge():
    x = _gaussian_features(50, 8, 1)
    merged = stats.moments_merge(_moments(x[:20]), _moments(x[20:]))
    whole = _moments(x)
    np.testing.assert_allclose(merged.outer, whole.outer, rtol=1e-12)
    assert int(merged.num_items) == 50


@pytest.mark.parametrize('n1, n2', [(400, 300), (20, 12)])
def test_frechet_distance_matches_the_official_sqrtm(n1, n2):
    """Full-rank and singular (fewer images than dimensions) covariances: the eigenvalue form
    equals the official Schur square root. Streaming moments (E[xx^T] - mu mu^T) against
    np.cov already differ by ~3e-9 relative here; the singular product's Schur root loses a
    few more digits. A wrong root or trace term is off by percents."""
    x = _gaussian_features(n1, 32, 2)
    y = _gaussian_features(n2, 32, 3, shift=0.3)
    got = fid.fid_from_moments(_moments(x), _moments(y))
    np.testing.assert_allclose(got, _official_fid(x, y), rtol=1e-7 if n2 > 32 else 1e-6)


def test_fid_of_samples_oracle_is_the_official_fid():
    """The tests' sample-based FID (`conftest.fid_of_samples`, the nuclear-norm form) against
    the official sqrtm, full-rank and singular: the oracle other tests compare to."""
    for n1, n2 in ((400, 300), (20, 12)):
        x, y = _gaussian_features(n1, 32, 5), _gaussian_features(n2, 32, 6, shift=0.3)
        np.testing.assert_allclose(fid_of_samples(x, y), _official_fid(x, y),
                                   rtol=1e-9 if n2 > 32 else 1e-6)


def test_frechet_distance_closed_form_diagonal():
    """N(0, diag a) vs N(m, diag b): |m|^2 + sum (sqrt a - sqrt b)^2."""
    a, b, m = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0]), np.array([1.0, 2.0, 0.0])
    got = fid.frechet_distance(np.zeros(3), np.diag(a), m, np.diag(b))
    np.testing.assert_allclose(got, 5.0 + 1.0 + 1.0 + 0.0, rtol=1e-10)


def test_fid_of_a_set_with_itself_is_zero():
    x = _gaussian_features(500, 64, 4)
    m = _moments(x)
    assert abs(fid.fid_from_moments(m, m)) < 1e-6
