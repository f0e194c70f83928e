"""Sharded extraction (8 fake CPU devices == 1 device) and image sources."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flaxgan.metrics import features
from tests.conftest import xla_flags

_SHARDING_CHECK = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from flaxgan.metrics import features
    from flaxgan.train.sharding import make_mesh
    assert jax.device_count() == 8, jax.devices()

    def detector(params, images):  # cheap stand-in with a cross-pixel reduction
        x = images.astype(jnp.float32) / 255.0
        return jnp.tanh(jnp.einsum('nhwc,cd->nd', x, params['w']) / x.shape[1])

    params = {'w': np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)}
    images = np.random.default_rng(1).integers(0, 256, (21, 9, 7, 3)).astype(np.uint8)
    one = features.make_extractor(detector, params, batch_size=8,
                                  mesh=make_mesh(jax.devices()[:1]))(images)
    eight = features.make_extractor(detector, params, batch_size=8)(images)
    assert eight.shape == (21, 5), eight.shape
    # 63-term float32 sums vectorised for another per-device batch: ~1e-7; features of the
    # wrong images (a shard or padding mix-up) differ by O(0.1).
    np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-6)
    print('ok')
''')


def test_sharded_extraction_8_devices_equals_1():
    """Runs in a subprocess so that the 8 fake devices exist before jax is imported."""
    env = dict(os.environ, XLA_FLAGS=xla_flags(8))
    out = subprocess.run([sys.executable, '-c', _SHARDING_CHECK], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-3000:]


def test_extractor_pads_ragged_batches():
    def detector(params, images):
        return jnp.mean(images.astype(jnp.float32), axis=(1, 2)) * params

    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    got = features.make_extractor(detector, jnp.float32(2.0), batch_size=3)(images)
    # Means of 16 uint8 values: exact in float32 (integer sums, a power-of-two count).
    np.testing.assert_allclose(got, images.astype(np.float32).mean(axis=(1, 2)) * 2, rtol=1e-6)
    assert jax.device_count() >= 1


def test_a_short_last_step_runs_a_power_of_two_batch_per_device():
    """A partial step is padded to the device count times the next power of two, not to the
    whole step: a few images on many devices cost a few detector passes."""
    n_dev = jax.local_device_count()
    step = 8 * n_dev
    # images -> per-device batches of the programs it runs (a full step, then the rest)
    cases = {step + 1: [8, 1], 3 * n_dev: [4], 5 * n_dev: [8], 2 * step: [8]}
    for count, want in cases.items():
        per_device_batches = []

        def detector(params, images, traced=per_device_batches):
            traced.append(images.shape[0])  # at trace time: once per program
            return jnp.mean(images.astype(jnp.float32), axis=(1, 2)) * params

        images = np.random.default_rng(count).integers(0, 256, (count, 4, 4, 3), np.uint8)
        got = features.make_extractor(detector, jnp.float32(2.0), batch_size=step)(images)
        np.testing.assert_allclose(got, images.astype(np.float32).mean(axis=(1, 2)) * 2,
                                   rtol=1e-6)
        assert per_device_batches == want, (count, per_device_batches)


def _write(path, array):
    Image.fromarray(array).save(path)


def test_folder_source_gray_to_rgb_order_and_xflip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
    gray = rng.integers(0, 256, (6, 5)).astype(np.uint8)
    _write(tmp_path / 'b.png', gray)
    _write(tmp_path / 'a.png', rgb)
    (tmp_path / 'notes.txt').write_text('ignored')
    src = features.folder_source(tmp_path, xflip=True)
    assert src.num_images == 4 and src.resolution == (6, 5) and src.xflip
    batch = np.concatenate(list(src.batches(3)))
    np.testing.assert_array_equal(batch[0], rgb)
    np.testing.assert_array_equal(batch[1], np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(batch[2], rgb[:, ::-1])


def test_folder_source_splits_batches_on_shape_change(tmp_path):
    for i, shape in enumerate([(4, 4, 3), (4, 4, 3), (8, 6, 3), (4, 4, 3)]):
        _write(tmp_path / f'{i}.png', np.zeros(shape, np.uint8))
    shapes = [b.shape for b in features.folder_source(tmp_path).batches(8)]
    assert shapes == [(2, 4, 4, 3), (1, 8, 6, 3), (1, 4, 4, 3)]


def test_folder_source_start_and_max(tmp_path):
    for i in range(5):
        _write(tmp_path / f'{i}.png', np.full((2, 2, 3), i, np.uint8))
    src = features.folder_source(tmp_path, max_images=2, start=1)
    assert [int(b[0, 0, 0]) for b in np.concatenate(list(src.batches(8)))] == [1, 2]


def test_missing_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope'):
        features.folder_source(tmp_path / 'nope')


def test_generator_source_needs_max_items_and_is_deterministic():
    sample = lambda key, n: np.asarray(
        jax.random.randint(key, (n, 2, 2, 3), 0, 256).astype(jnp.uint8))
    src = features.generator_source(sample, seed=3)
    extract = features.make_extractor(
        lambda p, x: jnp.mean(x.astype(jnp.float32), axis=(1, 2)), {}, batch_size=4)
    with pytest.raises(ValueError, match='max_items'):
        next(features.iterate_features(src, extract, progress=False))
    a = np.concatenate(list(features.iterate_features(src, extract, 10, progress=False)))
    b = np.concatenate(list(features.iterate_features(src, extract, 10, progress=False)))
    assert a.shape == (10, 3)
    np.testing.assert_array_equal(a, b)  # same program on the same inputs: deterministic


def test_class_labels_follow_the_class_frequencies():
    drawn = features.class_labels(jax.random.key(0), 4000, 3, (0.5, 0.0, 0.5))
    assert drawn.shape == (4000, 3) and bool(jnp.all(jnp.sum(drawn, 1) == 1))
    # 4000 Bernoulli(0.5) draws: standard error 0.008; 0.03 is almost four of them.
    np.testing.assert_allclose(jnp.mean(drawn, 0), [0.5, 0.0, 0.5], atol=0.03)
    uniform = features.class_labels(jax.random.key(1), 4000, 4)
    np.testing.assert_allclose(jnp.mean(uniform, 0), [0.25] * 4, atol=0.03)
    assert features.class_labels(jax.random.key(2), 5, 0).shape == (5, 0)
    with pytest.raises(ValueError, match="expected 3 class probabilities, got 2"):
        features.class_labels(jax.random.key(3), 5, 3, (0.5, 0.5))
