"""Linear separability: the official entropy bookkeeping, the pruning rule, and whole runs on
generators whose attributes are (or are not) linear in the latent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.metrics import attributes, ls, ppl, registry
from flaxgan.models import stylegan2
from flaxgan.train.sharding import make_mesh

Z = 12  # the toy synthesis writes z / 3 into a 2x2x3 image


def _h(p):
    p = np.asarray(p, np.float64).ravel()
    p = p[p > 0]
    return -np.sum(p * np.log2(p))


@pytest.mark.parametrize('table, want', [
    ([[0.5, 0.0], [0.0, 0.5]], 0.0),        # prediction = label
    ([[0.0, 0.3], [0.7, 0.0]], 0.0),        # prediction = 1 - label: still fully informative
    ([[0.25, 0.25], [0.25, 0.25]], 1.0),    # independent, balanced label
    ([[0.1, 0.4], [0.1, 0.4]], _h([0.2, 0.8])),  # independent: H(Y)
    ([[3, 0], [0, 0]], 0.0),                # one class only (unnormalised table)
])
def test_conditional_entropy_known_tables(table, want):
    assert ls.conditional_entropy(table) == pytest.approx(want, abs=1e-6)


def test_conditional_entropy_is_joint_minus_marginal():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random((2, 2)) * (rng.random((2, 2)) > 0.2)
        p = p / p.sum()
        want = _h(p) - _h(p.sum(axis=1))  # H(Y|X) = H(X, Y) - H(X), X on axis 0
        assert ls.conditional_entropy(p) == pytest.approx(max(want, 0.0), abs=1e-5)


def test_joint_table_and_scores():
    table = ls.joint_table(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    np.testing.assert_allclose(table, [[0.25, 0.25], [0.0, 0.5]])
    scores = ls.separability_scores({'z': np.zeros(40), 'w': np.full(40, 0.5)})
    assert scores == {'ls_z': 1.0, 'ls_w': 2.0 ** 20}


def test_keep_most_confident_half():
    p = np.array([0.5, 0.9, 0.05, 0.6, 0.1, 0.99, 0.3, 0.95], np.float32)
    keep, labels = ls.keep_most_confident(p, 4)
    # confidences .5 .9 .95 .6 .9 .99 .7 .95: ties keep sample order (stable sort)
    np.testing.assert_array_equal(keep, [5, 2, 7, 1])
    np.testing.assert_array_equal(labels, [0, 1, 0, 0])  # 0 = present (p >= 1 - p)
    keep, labels = ls.keep_most_confident(np.array([0.5, 0.5], np.float32), 1)
    assert keep.tolist() == [0] and labels.tolist() == [0]


def test_svm_single_class_counts_as_perfect():
    x = np.random.default_rng(0).normal(size=(10, 3))
    labels = np.ones(10, np.int64)
    np.testing.assert_array_equal(ls.svm_predictions(x, labels), labels)


# --------------------------------------------------------------------------------------------
# Whole runs.


def _toy_generator(nonlinear_w=False):
    def mapping(z, c=None):
        w = 2 * jnp.sin(3 * z) if nonlinear_w else z
        return jnp.repeat(w[:, None], 2, axis=1)

    def synthesis(ws, key):
        del key
        return jnp.clip(ws[:, 0] / 3, -1, 1).reshape(-1, 2, 2, 3)

    return ppl.LatentGenerator(mapping, synthesis, Z)


_V = jnp.asarray(np.random.default_rng(1).normal(size=(Z, 40)), jnp.float32)


def _pixels(images):
    return (images.astype(jnp.float32) / 127.5 - 1).reshape(images.shape[0], -1)


def linear_classifier(images):
    """Attributes = signs of fixed linear functions of the latent (up to quantisation)."""
    return jax.nn.sigmoid(20 * _pixels(images) @ _V)


def scrambled_classifier(images):
    """Attributes = a rapidly oscillating function of the latent: no linear boundary."""
    return jax.nn.sigmoid(10 * jnp.sin(40 * _pixels(images) @ _V))


def test_linear_attributes_are_separable_and_scrambled_ones_are_not():
    gen = _toy_generator()
    lin = ls.linear_separability(gen, linear_classifier, num_samples=400, batch_size=64,
                                 progress=False)
    rnd = ls.linear_separability(gen, scrambled_classifier, num_samples=400, batch_size=64,
                                 progress=False)
    assert set(lin) == {'ls_z', 'ls_w'}
    assert 1.0 <= lin['ls_z'] < 1.5 and 1.0 <= lin['ls_w'] < 1.5  # minimum 2**0
    assert rnd['ls_z'] > 2.0 ** 20 and rnd['ls_w'] > 2.0 ** 20


def test_w_is_scored_on_the_mapped_latent():
    gen = _toy_generator(nonlinear_w=True)  # w = 2 sin(3 z): labels linear in w, not in z
    z, w, probs = ls.sample_attributes(gen, linear_classifier, 400, 64, progress=False)
    # w = 2 sin(3 z) in another batch layout: a few ulp; the z -> w mix-up it guards is O(1).
    np.testing.assert_allclose(w, np.asarray(gen.mapping(jnp.asarray(z)))[:, 0], rtol=1e-5,
                               atol=1e-5)
    ent = ls.attribute_entropies({'z': z, 'w': w}, probs, 200)
    assert ent['w'].sum() < 0.5 < ent['z'].sum()


def test_samples_do_not_depend_on_the_device_count():
    gen = _toy_generator()
    one = ls.sample_attributes(gen, linear_classifier, 40, 16, seed=3, progress=False,
                               mesh=make_mesh(jax.local_devices()[:1]))
    every = ls.sample_attributes(gen, linear_classifier, 40, 16, seed=3, progress=False)
    for a, b in zip(one, every, strict=True):
        assert a.shape == b.shape and a.shape[0] == 40
    # z and w: elementwise float32 maps of the same random bits, equal up to a few ulp.
    for a, b in zip(one[:2], every[:2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The classifier sees uint8 images: an ulp can move a pixel across a rounding boundary
    # (a step of 1/127.5, up to ~0.1 in a probability) on a rare sample, so allow 2 of 40;
    # latents that depend on the device count change every sample.
    same = np.isclose(one[2], every[2], rtol=1e-5, atol=1e-6).all(axis=1)
    assert same.sum() >= 38, same


def _tiny_stylegan2():
    """An 8x8 StyleGAN2 generator with random variables (shapes from eval_shape: compiling
    the network's init costs more than the test)."""
    G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                            mapping_kwargs={'num_layers': 1},
                            synthesis_kwargs={'channel_base': 64, 'channel_max': 4})
    shapes = jax.eval_shape(lambda: G.init({'params': jax.random.key(0),
                                            'noise': jax.random.key(1)},
                                           jnp.zeros([1, 8]), noise_mode='random'))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    mapping = lambda z, c=None: G.apply(variables, z, None, method=G.map)
    synthesis = lambda ws, key: G.apply(variables, ws, noise_mode='random',
                                        rngs={'noise': key}, method=G.synthesize)
    return ppl.LatentGenerator(mapping, synthesis, 8)


def test_ls_on_a_tiny_stylegan2_with_an_attribute_network():
    config = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=8)
    clf = attributes.AttributeClassifier(config, attributes.init_params(config,
                                                                        jax.random.key(2)))
    z, w, probs = ls.sample_attributes(_tiny_stylegan2(), clf, 96, 32, progress=False)
    assert z.shape == (96, 8) and w.shape == (96, 8) and probs.shape == (96, 40)
    assert np.all((probs >= 0) & (probs <= 1)) and probs.std() > 0
    scores = ls.separability_scores(ls.attribute_entropies({'z': z, 'w': w}, probs, 48))
    assert all(1.0 <= v <= 2.0 ** 40 for v in scores.values())


def test_registry_ls(monkeypatch):
    with pytest.raises(ValueError, match='attribute_classifier'):
        registry.calc_metric('ls', registry.MetricContext(real=None, fake=None,
                                                          generator=_toy_generator()))
    calls = {}
    real = ls.linear_separability

    def fake(generator, classify_fn, **kwargs):
        calls.update(kwargs)
        return real(generator, classify_fn, num_samples=200, progress=False)

    monkeypatch.setattr(registry.ls_lib, 'linear_separability', fake)
    ctx = registry.MetricContext(real=None, fake=None, generator=_toy_generator(),
                                 attribute_classifier=linear_classifier, progress=False)
    out = registry.calc_metric('ls', ctx)
    assert calls['num_samples'] == 200000 and calls['num_keep'] == 100000
    assert set(out['results']) == {'ls_z', 'ls_w'} and out['num_images'] == {'fake': 200000}
    assert not registry.higher_is_better('ls')
