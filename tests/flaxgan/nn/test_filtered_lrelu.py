import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from flaxgan.nn.filtered_lrelu import filtered_lrelu
from tests.flaxgan.nn import reference_ops

FU = scipy.signal.firwin(12, cutoff=3, width=2, fs=20).astype(np.float32)
FD = scipy.signal.firwin(12, cutoff=4, width=2, fs=20).astype(np.float32)


@pytest.mark.parametrize("flip_filter", [False, True])
@pytest.mark.parametrize(
    "up, down, padding, fu, fd",
    [
        (2, 2, (5, 4, 5, 4), FU, FD),
        (1, 1, (0, 0, 0, 0), None, None),
        (2, 1, (-1, 3, 2, -2), FU, None),  # negative padding crops
        (4, 2, (9, 8, 7, 6), FU, np.outer(FD, FD)),  # radial-style 2-D down filter
        (1, 2, (3, 2, 3, 2), None, FD),
        (2, 2, (5, 4, 5, 4), np.outer(FU, FU), FD),
    ],
)
def test_matches_the_plain_numpy_composition(up, down, padding, fu, fd, flip_filter):
    rng = np.random.default_rng(0)
    x = rng.standard_normal([2, 12, 10, 3]).astype(np.float32)
    b = rng.standard_normal([3]).astype(np.float32)
    kwargs = dict(up=up, down=down, padding=padding, clamp=1.5, flip_filter=flip_filter)
    fused = filtered_lrelu(jnp.asarray(x), fu, fd, jnp.asarray(b), **kwargs)

    # Bias, zero-stuffing upsampler + filter, lrelu·sqrt(2), clamp, filter + decimation.
    y = reference_ops.upfirdn2d(x + b, np.ones(1) if fu is None else fu, up=up,
                                padding=padding, flip_filter=flip_filter, gain=up**2)
    y = np.clip(np.where(y >= 0, y, 0.2 * y) * np.sqrt(2), -1.5, 1.5)
    y = reference_ops.upfirdn2d(y, np.ones(1) if fd is None else fd, down=down,
                                flip_filter=flip_filter)
    np.testing.assert_allclose(np.asarray(fused), y, atol=1e-5)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="NHWC"):
        filtered_lrelu(jnp.ones([3, 3, 3]))
    with pytest.raises(ValueError, match="up and down"):
        filtered_lrelu(jnp.ones([1, 3, 3, 1]), up=0)
