"""KID against a naive transcription of the unbiased estimator."""

import numpy as np
import pytest

from flaxgan.metrics import kid


def _naive_kid(gen, real, num_subsets, max_subset_size, seed):
    """Double loops over one subset at a time, float64, same subset draws as the official."""
    gen, real = gen.astype(np.float64), real.astype(np.float64)
    d = gen.shape[1]
    m = min(len(gen), len(real), max_subset_size)
    k = lambda a, b: (a @ b / d + 1) ** 3
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        total += same / (m - 1) - cross * 2 / m
    return total / num_subsets / m


@pytest.mark.parametrize('n_gen,n_real,subset', [(30, 40, 25), (20, 20, 1000)])
def test_kid_matches_naive(n_gen, n_real, subset):
    rng = np.random.default_rng(0)
    gen = rng.normal(0.3, 1.0, (n_gen, 12)).astype(np.float32)
    real = rng.normal(0.0, 1.0, (n_real, 12)).astype(np.float32)
    got = kid.kid(gen, real, num_subsets=5, max_subset_size=subset, seed=3)
    want = _naive_kid(gen, real, 5, subset, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-8)


def test_kid_matches_official_vectorised_float32():
    """The official numpy expression (float32) on larger sets agrees to its float32 precision."""
    rng = np.random.default_rng(1)
    gen = np.abs(rng.normal(0.2, 0.5, (300, 256))).astype(np.float32)
    real = np.abs(rng.normal(0.25, 0.5, (250, 256))).astype(np.float32)
    n, m = 256, 250
    t = 0
    rs = np.random.RandomState(7)
    for _ in range(4):
        x = gen[rs.choice(300, m, replace=False)]
        y = real[rs.choice(250, m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    official = t / 4 / m
    np.testing.assert_allclose(kid.kid(gen, real, 4, 1000, seed=7), official, rtol=2e-3)


def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    same = kid.kid(a, b, num_subsets=10, max_subset_size=100)
    shifted = kid.kid(a + 1.0, b, num_subsets=10, max_subset_size=100)
    assert abs(same) < 0.01 < shifted
