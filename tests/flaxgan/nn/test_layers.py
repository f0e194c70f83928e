import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.nn import activation, layers


def test_bias_act_lrelu_gain_and_clamp():
    x = jnp.asarray([[-2.0, -0.5, 0.5, 3.0]])
    b = jnp.asarray([0.0, 0.0, 0.0, 1.0])
    y = activation.bias_act(x, b, act="lrelu", clamp=4.0)
    want = np.array([[-0.4, -0.1, 0.5, 4.0]]) * np.sqrt(2)
    want[0, 3] = 4.0
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(activation.bias_act(x, act="linear", gain=3.0)),
                               np.asarray(x) * 3.0)
    with pytest.raises(ValueError, match="unknown activation"):
        activation.bias_act(x, act="gelu-ish")


def test_minibatch_std_matches_explicit_groups():
    rng = np.random.default_rng(0)
    x = rng.standard_normal([6, 3, 3, 4]).astype(np.float32)
    y = np.asarray(layers.minibatch_std(jnp.asarray(x), group_size=3, num_channels=2))
    assert y.shape == (6, 3, 3, 6)
    np.testing.assert_array_equal(y[..., :4], x)
    for i in range(6):
        group = x[i % 2::2]  # samples i, i + N/G, ... share a group
        std = np.sqrt(group.var(axis=0) + 1e-8)  # [H, W, C]
        for f in range(2):
            np.testing.assert_allclose(y[i, :, :, 4 + f], std[..., 2 * f:2 * f + 2].mean(),
                                       rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        layers.minibatch_std(jnp.ones([5, 2, 2, 2]), group_size=4)


def test_statistics_run_in_at_least_float32():
    """float16 inputs get float32 statistics; float64 ones keep float64 (a float64 network,
    e.g. `benchmarks/stylegan1_drift.py`, must not be rounded to float32 inside)."""
    assert layers.at_least_float32(jnp.zeros(2, jnp.float16)).dtype == jnp.float32
    assert layers.at_least_float32(jnp.zeros(2, jnp.bfloat16)).dtype == jnp.float32
    x = np.random.default_rng(1).standard_normal([4, 2, 2, 3]) * 1e-3 + 1.0
    with jax.enable_x64(True):
        y = layers.minibatch_std(jnp.asarray(x), group_size=4)
        assert y.dtype == jnp.float64
        # The std of values near 1 spread by 1e-3: float32 would lose ~4 of its digits.
        want = np.sqrt(x.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(np.asarray(y[0, 0, 0, 3]), want, rtol=1e-12)


def test_equalized_lr_dense_scales_at_runtime():
    layer = layers.FullyConnectedLayer(3, lr_multiplier=0.01, bias_init=2.0)
    params = layer.init(jax.random.key(0), jnp.ones([1, 4]))["params"]
    np.testing.assert_allclose(np.asarray(params["bias"]), 2.0)
    assert float(jnp.std(params["weight"])) > 10  # stored as randn / lr_multiplier
    x = jnp.asarray(np.random.default_rng(1).standard_normal([2, 4]), jnp.float32)
    y = layer.apply({"params": params}, x)
    want = x @ (params["weight"] * 0.01 / 2.0) + 2.0 * 0.01
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-5)


def test_frozen_conv_layer_keeps_weights_in_buffers():
    layer = layers.Conv2dLayer(4, 3, trainable=False)
    variables = layer.init(jax.random.key(0), jnp.ones([1, 8, 8, 2]))
    assert "params" not in variables
    assert set(variables["buffers"]) == {"weight", "bias"}


def test_normalize_2nd_moment():
    z = jnp.asarray(np.random.default_rng(0).standard_normal([3, 16]) * 5)
    np.testing.assert_allclose(np.asarray(jnp.mean(layers.normalize_2nd_moment(z) ** 2, -1)), 1.0,
                               rtol=1e-5)
