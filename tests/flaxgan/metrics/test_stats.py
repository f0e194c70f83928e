"""Cached dataset statistics."""

import numpy as np
from PIL import Image

from flaxgan.metrics import features, stats


def _counting_extractor():
    calls = []

    def extract(images):
        calls.append(len(images))
        return images.reshape(len(images), -1)[:, :4].astype(np.float32)

    return features.Extractor(extract, 'toy', 4), calls


def _folder(tmp_path, n=6):
    for i in range(n):
        Image.fromarray(np.full((3, 3, 3), 10 * i, np.uint8)).save(tmp_path / f'{i}.png')
    return tmp_path


def test_moments_cached_and_keyed(tmp_path):
    (tmp_path / 'd').mkdir()
    src = features.folder_source(_folder(tmp_path / 'd'))
    extract, calls = _counting_extractor()
    cache = str(tmp_path / 'cache')
    m1 = stats.dataset_moments(src, extract, cache_dir=cache, progress=False)
    n_calls = len(calls)
    m2 = stats.dataset_moments(src, extract, cache_dir=cache, progress=False)
    assert len(calls) == n_calls, 'second call must come from the cache'
    np.testing.assert_array_equal(m1.outer, m2.outer)
    assert int(m1.num_items) == 6
    # a different count, flip or detector is a different entry
    stats.dataset_moments(src, extract, max_items=3, cache_dir=cache, progress=False)
    flipped = features.folder_source(tmp_path / 'd', xflip=True)
    m3 = stats.dataset_moments(flipped, extract, cache_dir=cache, progress=False)
    assert int(m3.num_items) == 12 and len(calls) > n_calls
    assert len(list((tmp_path / 'cache' / 'gan-metrics').glob('*.npz'))) == 3


def test_features_not_cached_for_uncacheable_sources(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 3, 3, 3)).astype(np.uint8)
    extract, calls = _counting_extractor()
    cache = tmp_path / 'cache'
    f = stats.dataset_features(features.array_source(arr), extract, cache_dir=str(cache),
                               progress=False)
    assert f.shape == (5, 4) and not cache.exists()
    stats.dataset_features(features.array_source(arr, name='named'), extract,
                           cache_dir=str(cache), progress=False)
    assert len(list(cache.rglob('*.npz'))) == 1
