import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.nn import fir
from tests.flaxgan.nn import reference_ops


def _images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "taps, up, down, padding, flip_filter, gain",
    [
        ([1, 3, 3, 1], 1, 1, (1, 2, 2, 1), False, 1.0),
        ([1, 3, 3, 1], 2, 1, (2, 1, 2, 1), False, 4.0),
        ([1, 3, 3, 1], 1, 2, (1, 1, 1, 1), False, 1.0),
        ([1, 2, 3, 4, 5, 6, 7, 8], 2, 2, (3, 4, 4, 3), True, 2.0),  # separable
        ([[1, 2], [3, 4]], 3, 1, (-1, 2, 0, -2), False, 1.0),  # 2-D, crop
        ([1, 3, 3, 1], 1, 3, (-2, -1, 0, 0), True, 0.5),
    ],
)
def test_upfirdn2d_matches_direct_computation(taps, up, down, padding, flip_filter, gain):
    x = _images([2, 7, 9, 3])
    f = fir.setup_filter(taps)
    got = fir.upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=padding,
                        flip_filter=flip_filter, gain=gain)
    want = reference_ops.upfirdn2d(x, f, up, down, padding, flip_filter, gain)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_setup_filter_normalises_and_chooses_separable():
    np.testing.assert_allclose(fir.setup_filter([1, 3, 3, 1]).sum(), 1.0, rtol=1e-6)
    assert fir.setup_filter([1, 3, 3, 1]).shape == (4, 4)
    assert fir.setup_filter(np.ones(8)).shape == (8,)
    np.testing.assert_allclose(fir.setup_filter([1, 2], gain=4.0).sum(), 4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="FIR filter"):
        fir.setup_filter(np.ones([2, 2, 2]))


@pytest.mark.parametrize("size", [4, 7])
def test_resampling_keeps_shape_and_dc(size):
    x = jnp.ones([1, size, size, 2])
    f = fir.setup_filter([1, 3, 3, 1])
    up = fir.upsample2d(x, f)
    assert up.shape == (1, 2 * size, 2 * size, 2)
    np.testing.assert_allclose(np.asarray(up)[0, 2:-2, 2:-2], 1.0, rtol=1e-6)  # interior keeps DC
    assert fir.downsample2d(x, f).shape == (1, size // 2, size // 2, 2)
    assert fir.filter2d(x, f).shape == x.shape


def test_upfirdn2d_rejects_bad_input():
    with pytest.raises(ValueError, match="NHWC"):
        fir.upfirdn2d(jnp.ones([3, 3]), None)
    with pytest.raises(ValueError, match="padding"):
        fir.parse_padding([1, 2, 3])
