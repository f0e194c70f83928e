"""PPL pieces on a tiny linear generator with identity LPIPS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.metrics import ppl

Z, NUM_WS, RES = 6, 2, 16
_A = np.random.default_rng(0).normal(size=(Z, RES * RES * 3)).astype(np.float32) / 4


def mapping(z, c):
    del c
    return jnp.repeat((z * 0.5)[:, None, :], NUM_WS, axis=1)


def synthesis(ws, key):
    del key
    return jnp.tanh((ws.mean(axis=1) @ _A).reshape(-1, RES, RES, 3))


def identity_lpips(images):
    return images.reshape(images.shape[0], -1) / 255.0


def test_slerp_endpoints_and_constant_speed():
    rng = np.random.default_rng(1)
    a, b = jnp.asarray(rng.normal(size=(4, 5))), jnp.asarray(rng.normal(size=(4, 5)))
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    np.testing.assert_allclose(ppl.slerp(a, b, jnp.zeros((4, 1))), unit(a), atol=1e-5)
    np.testing.assert_allclose(ppl.slerp(a, b, jnp.ones((4, 1))), unit(b), atol=1e-5)
    half = ppl.slerp(a, b, jnp.full((4, 1), 0.5))
    np.testing.assert_allclose(np.sum(half * unit(a), -1), np.sum(half * unit(b), -1), atol=1e-5)


def test_filtered_mean_percentiles():
    d = np.arange(1.0, 201.0)  # 1st 'lower' = 2, 99th 'higher' = 199
    assert ppl.filtered_mean(d) == pytest.approx(np.arange(2.0, 200.0).mean())


def test_crop_and_scale_official_geometry():
    img = jnp.zeros((1, 512, 512, 1))
    out = ppl.crop_and_scale(img, crop=True)
    assert out.shape == (1, 128, 128, 3)  # crop 256 then /2 (factor of the 512 original)
    np.testing.assert_allclose(out, 127.5, atol=1e-3)  # resampling a constant: only rounding
    assert ppl.crop_and_scale(jnp.zeros((1, 64, 64, 3)), crop=False).shape == (1, 64, 64, 3)


@pytest.mark.parametrize('space', ['w', 'z'])
def test_distances_equal_finite_difference(space):
    key = jax.random.key(3)
    d = ppl.ppl_distances(key, 8, Z, mapping, synthesis, identity_lpips, space, 'full',
                          epsilon=1e-2, crop=False)
    ws0, ws1 = ppl.pair_latents(jax.random.split(key)[0], 8, Z, mapping, space, 'full', 1e-2)
    f = lambda ws: identity_lpips((synthesis(ws, None) + 1) * 127.5)
    want = np.sum((np.asarray(f(ws0)) - np.asarray(f(ws1))) ** 2, axis=1) / 1e-4
    # Pixel differences ~1e-3 carry float32 rounding ~1e-7 (another batch layout rounds
    # differently): ~1e-5 per pair after the 768-term sum; a wrong pair or scale is O(1).
    np.testing.assert_allclose(d, want, rtol=1e-4)
    assert d.shape == (8,) and np.all(np.asarray(d) > 0)


def test_end_sampling_starts_at_w0_and_ppl_runs():
    key = jax.random.key(4)
    ws0, _ = ppl.pair_latents(key, 5, Z, mapping, 'w', 'end', 1e-4)
    z0 = jnp.split(jax.random.normal(jax.random.split(key, 3)[1], (10, Z)), 2)[0]
    np.testing.assert_allclose(ws0, mapping(z0, None), atol=1e-6)
    value = ppl.ppl(mapping, synthesis, identity_lpips, Z, num_samples=40, space='w',
                    sampling='end', crop=False, batch_size=16, progress=False)
    assert np.isfinite(value) and value > 0


def test_value_does_not_depend_on_the_device_count():
    from flaxgan.train.sharding import make_mesh

    # epsilon 1e-2, not the metric's 1e-4: the finite difference of float32 pixels rounds 100x
    # less (1 vs 8 devices: 2e-7 relative here; at 1e-4, 4e-6 here and 3e-5 on another CPU),
    # while other latents (another seed) move the mean of the 48 distances by 13%.
    kwargs = dict(num_samples=48, space='z', sampling='full', crop=False, batch_size=16,
                  progress=False, seed=5, epsilon=1e-2)
    one = ppl.ppl(mapping, synthesis, identity_lpips, Z,
                  mesh=make_mesh(jax.local_devices()[:1]), **kwargs)
    every = ppl.ppl(mapping, synthesis, identity_lpips, Z, **kwargs)
    assert len(jax.local_devices()) > 1 or pytest.skip('needs several devices')
    assert every == pytest.approx(one, rel=1e-4)


def test_conditional_pairs_share_their_class():
    seen = []

    def conditional_mapping(z, c):
        seen.append(c)
        return mapping(z, c) + jnp.sum(c * jnp.arange(1.0, 4.0), axis=1)[:, None, None]

    ppl.pair_latents(jax.random.key(0), 6, Z, conditional_mapping, 'w', 'full', 1e-4, c_dim=3)
    c = np.asarray(seen[0])
    assert c.shape == (12, 3) and np.all(c.sum(1) == 1)
    np.testing.assert_array_equal(c[:6], c[6:])
    # Classes come from the dataset's frequencies when given (the official draws a random
    # training example's label): here only class 2.
    seen.clear()
    ppl.pair_latents(jax.random.key(1), 6, Z, conditional_mapping, 'w', 'full', 1e-4, c_dim=3,
                     class_probs=(0.0, 0.0, 1.0))
    np.testing.assert_array_equal(np.asarray(seen[0]).argmax(1), [2] * 12)
