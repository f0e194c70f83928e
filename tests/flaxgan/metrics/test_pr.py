"""Precision / recall on synthetic distributions with known answers, and vs brute force."""

import numpy as np
import pytest

from flaxgan.metrics import pr


def _brute_force(gen, real, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def covered(probes, manifold):
        d = np.linalg.norm(probes[:, None] - manifold[None], axis=-1)
        return np.any(d <= radii(manifold)[None], axis=1).mean()

    return covered(gen, real), covered(real, gen)


def _cloud(n, d=8, seed=0, shift=0.0):
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d)).astype(np.float32)


def test_identical_sets_full_precision_and_recall():
    real = _cloud(100)
    assert pr.precision_recall(real.copy(), real, half=False) == (1.0, 1.0)


def test_disjoint_sets_zero():
    assert pr.precision_recall(_cloud(60, shift=100.0), _cloud(80), half=False) == (0.0, 0.0)


def test_extra_junk_halves_precision_keeps_recall():
    """gen = real + as many far outliers: precision 1/2, recall 1."""
    real = _cloud(64)
    gen = np.concatenate([real, _cloud(64, seed=1, shift=50.0)])
    assert pr.precision_recall(gen, real, half=False) == (0.5, 1.0)


def test_mode_dropping_keeps_precision_lowers_recall():
    """Two far-apart modes in real, gen covers one: precision ~1, recall at most 1/2."""
    real = np.concatenate([_cloud(50, d=2, seed=2), _cloud(50, d=2, seed=3, shift=40.0)])
    gen = _cloud(70, d=2, seed=4)
    p, r = pr.precision_recall(gen, real, half=False)
    assert (p, r) == pytest.approx(_brute_force(gen, real, 3))
    assert p > 0.9 and 0.4 < r <= 0.5


@pytest.mark.parametrize('row_batch,col_batch', [(1024, 8192), (7, 13)])
def test_matches_brute_force_with_tiling(row_batch, col_batch):
    gen, real = _cloud(90, seed=5, shift=0.4), _cloud(75, seed=6)
    got = pr.precision_recall(gen, real, 3, row_batch, col_batch, half=False)
    # Fractions of counts: exact unless a distance rounds across a radius. Here the closest
    # distance-radius gap is 1e-4 relative (measured in float64), ~1e3 float32 roundings.
    np.testing.assert_allclose(got, _brute_force(gen, real, 3), atol=0)


def test_half_precision_close_to_float32():
    gen, real = _cloud(120, 32, seed=7, shift=0.3), _cloud(120, 32, seed=8)
    np.testing.assert_allclose(pr.precision_recall(gen, real, half=True),
                               pr.precision_recall(gen, real, half=False), atol=0.03)
