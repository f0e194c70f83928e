"""FID Inception: official resize, weight reading, feature parity with the official network."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.metrics import features, inception, kid
from flaxgan.train.sharding import make_mesh
from tests.flaxgan.metrics.conftest import fid_of_samples

MAX_ABS_FEATURE_ERROR = 1e-4  # measured 1.6e-5 on CPU (features up to ~5)


def _grid_sample_reference(img: np.ndarray, out: int = 299) -> np.ndarray:
    """float64 transcription of the official affine_grid/grid_sample resize, per pixel."""
    h, w, _ = img.shape
    res = np.zeros((out, out, img.shape[2]))
    for j in range(out):
        for i in range(out):
            gx = (2 * i + 1) / out - 1 + (1 / w - 1 / out)  # affine_grid + theta correction
            gy = (2 * j + 1) / out - 1 + (1 / h - 1 / out)
            ux = min(max(((gx + 1) * w - 1) / 2, 0), w - 1)  # unnormalise, border clamp
            uy = min(max(((gy + 1) * h - 1) / 2, 0), h - 1)
            x0, y0 = int(np.floor(ux)), int(np.floor(uy))
            tx, ty = ux - x0, uy - y0
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            res[j, i] = ((1 - tx) * (1 - ty) * img[y0, x0] + tx * (1 - ty) * img[y0, x1]
                         + (1 - tx) * ty * img[y1, x0] + tx * ty * img[y1, x1])
    return res


@pytest.mark.parametrize('shape', [(109, 89), (17, 23), (400, 320)])
def test_resize_matches_grid_sample(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3)).astype(np.float32)
    got = np.asarray(inception.resize_to_299(jnp.asarray(img[None])))[0]
    # float32 sample positions (as torch's) are off by ~3e-5 px: x 255 grey levels ~ 1e-2
    np.testing.assert_allclose(got, _grid_sample_reference(img), atol=2e-2)


def test_resize_is_near_identity_at_299():
    img = np.random.default_rng(1).integers(0, 256, (2, 299, 299, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(inception.resize_to_299(jnp.asarray(img))), img,
                               atol=2e-2)


def test_missing_weights_error_names_the_file(tmp_path):
    missing = tmp_path / 'inception-2015-12-05.pt'
    with pytest.raises(inception.WeightsNotFoundError, match=str(missing)):
        inception.load_params(missing)


def test_not_a_torchscript_zip(tmp_path):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='bad.pt'):
        inception.read_torchscript(bad)


def test_weights_converted_and_cached(inception_params, tmp_path):
    conv = inception_params['conv']
    assert conv['weight'].shape == (3, 3, 3, 32)  # HWIO
    assert inception_params['mixed_10']['tower_2_conv']['weight'].shape == (1, 1, 2048, 192)
    cached = [p for p in pathlib.Path(inception.default_cache_dir()).glob('inception-*.npz')]
    assert cached, 'conversion should leave an .npz cache'
    reloaded = inception.load_params(str(max(cached, key=os.path.getmtime)))
    np.testing.assert_array_equal(reloaded['mixed_4']['tower_1']['conv_3']['var'],
                                  inception_params['mixed_4']['tower_1']['conv_3']['var'])


def test_feature_parity_with_official(inception_data, our_features):
    """Sharded features of 64 real faces vs the official TorchScript's (vendored)."""
    got, ref = our_features, inception_data[1]
    assert got.shape == (64, inception.FEATURE_DIM) and got.dtype == np.float32
    err = np.abs(got - ref).max()
    assert err < MAX_ABS_FEATURE_ERROR, f'max abs feature error {err:.3g}'


def test_fid_kid_with_our_features_match_official_features(inception_data, our_features):
    """FID / KID of the two halves (32 vs 32 faces) agree with the official features' values."""
    ref = inception_data[1]
    # Both from the samples (exact; `flaxgan.metrics.fid` itself is test_fid's and test_api's).
    ours, official = fid_of_samples(our_features[32:], our_features[:32]), fid_of_samples(
        ref[32:], ref[:32])
    assert ours == pytest.approx(official, rel=1e-4)
    assert kid.kid(our_features[32:], our_features[:32]) == pytest.approx(
        kid.kid(ref[32:], ref[:32]), rel=1e-3)


def test_sharded_inception_equals_one_device(inception_data, inception_params,
                                             inception_extractor):
    """All local devices (8 fake CPU devices under `make test`) vs a 1-device mesh."""
    images = inception_data[0][:8]
    one = features.make_extractor(inception.inception_features, inception_params, batch_size=8,
                                  mesh=make_mesh(jax.devices()[:1]))(images)
    # Another per-device batch vectorises the float32 convs differently; bound it as the
    # difference to the official features, far below a shard or padding mix-up (O(1)).
    np.testing.assert_allclose(inception_extractor(images), one, atol=MAX_ABS_FEATURE_ERROR)
