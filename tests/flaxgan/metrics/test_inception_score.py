"""Inception Score (``is50k``): the official split formula on softmax outputs with known IS."""

import numpy as np
import pytest
from scipy import stats as sp_stats

from flaxgan.metrics import features, registry

NUM_CLASSES = 10


def _context(probs: np.ndarray) -> registry.MetricContext:
    """Image ``i`` carries its index in its pixels; the 'detector' returns ``probs[i]``."""
    index = np.arange(len(probs))
    images = np.stack([np.full((2, 2, 3), i % 256, np.uint8) for i in index])
    images[:, 0, 0, 0] = index // 256
    lookup = lambda x: probs[x[:, 0, 0, 0].astype(int) * 256 + x[:, 1, 1, 0].astype(int)]
    return registry.MetricContext(real=None, fake=features.array_source(images),
                                  inception_probs=features.Extractor(lookup, 'probs', 16),
                                  progress=False)


def test_confident_and_uniform_over_classes_scores_the_class_count():
    probs = np.full((200, NUM_CLASSES), 1e-12)
    probs[np.arange(200), np.arange(200) % NUM_CLASSES] = 1.0
    mean, std, n = registry.compute_is(_context(probs), num_gen=200, num_splits=10)
    assert n == 200 and mean == pytest.approx(NUM_CLASSES, rel=1e-6) and std < 1e-6


def test_identical_predictions_score_one():
    probs = np.tile(np.linspace(1, 2, NUM_CLASSES) / np.linspace(1, 2, NUM_CLASSES).sum(),
                    (100, 1))
    mean, _, _ = registry.compute_is(_context(probs), num_gen=100, num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_matches_a_direct_kl_computation_per_split():
    probs = np.random.default_rng(0).dirichlet(np.full(NUM_CLASSES, 0.3), size=300)
    mean, std, _ = registry.compute_is(_context(probs), num_gen=300, num_splits=3)
    scores = [np.exp(np.mean([sp_stats.entropy(p, part.mean(0)) for p in part]))
              for part in np.split(probs, 3)]
    assert mean == pytest.approx(np.mean(scores), rel=1e-6)
    assert std == pytest.approx(np.std(scores), rel=1e-5)
