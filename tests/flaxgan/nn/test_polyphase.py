import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.nn import fir, polyphase
from tests.flaxgan.nn import reference_ops


def _random_case(seed: int):
    """Random shape, factors, padding (negative crops) and filter (None, 1-D or 2-D)."""
    rng = np.random.default_rng(seed)
    up, down = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    f = [None, rng.standard_normal(kh), rng.standard_normal((kh, kw))][seed % 3]
    h, w = (int(rng.integers(max(kh, kw) + 4, max(kh, kw) + 10)) for _ in range(2))
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    kwargs = dict(up=up, down=down, padding=[int(p) for p in rng.integers(-2, 8, 4)],
                  flip_filter=bool(rng.integers(0, 2)), gain=float(rng.uniform(0.5, 3)))
    return x, (None if f is None else f.astype(np.float32)), kwargs


def _vjp(fn, x: jax.Array, cotangent: jax.Array) -> jax.Array:
    """`fn`'s VJP at `x` applied to `cotangent`, jitted: one program instead of dozens of one-op
    compiles (XLA's fusion moves float32 results by ~1e-7, inside the tests' 1e-5)."""
    return jax.jit(lambda x, ct: jax.vjp(fn, x)[1](ct)[0])(x, cotangent)


@pytest.mark.parametrize("seed", range(12))
def test_matches_zero_stuffing_reference_and_conv_gradient(seed):
    x, f, kwargs = _random_case(seed)
    ours = lambda x: polyphase.upfirdn2d(x, f, **kwargs)
    y = jax.jit(ours)(jnp.asarray(x))
    ref = reference_ops.upfirdn2d(x, np.ones(1) if f is None else f,
                                  padding=fir.parse_padding(kwargs["padding"]),
                                  **{k: v for k, v in kwargs.items() if k != "padding"})
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5, rtol=1e-5)

    # The hand-written VJP (the transposed resampler) against autodiff of the convolutions.
    cotangent = jnp.asarray(np.random.default_rng(seed).standard_normal(y.shape), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(_vjp(ours, jnp.asarray(x), cotangent)),
        np.asarray(_vjp(lambda x: fir.upfirdn2d(x, f, **kwargs), jnp.asarray(x), cotangent)),
        atol=1e-5, rtol=1e-5)


def test_resample_transpose_is_the_adjoint():
    # <A x, y> = <x, A^T y> for an up map and its transposed down map.
    rng = np.random.default_rng(0)
    spec = polyphase.Resample(True, ((0.5, -1.0, 2.0), (1.5, 0.25, -0.5)), 2, (1, -1), (5, 4),
                              (9, 8), (1, 2))
    x = jnp.asarray(rng.standard_normal((1, 5, 4, 2)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((1, 9, 8, 2)), jnp.float32)
    lhs = jnp.vdot(polyphase.resample(x, spec), y)
    rhs = jnp.vdot(x, polyphase.resample(y, spec.transpose()))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=1e-5)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="NHWC"):
        polyphase.upfirdn2d(jnp.ones([3, 3, 3]), None)
    with pytest.raises(ValueError, match="up and down"):
        polyphase.upfirdn2d(jnp.ones([1, 3, 3, 1]), None, down=0)
    with pytest.raises(ValueError, match="empty output"):
        polyphase.upfirdn2d(jnp.ones([1, 3, 3, 1]), np.ones(2), padding=-2)


def test_up_and_downsample2d_match_fir_values_and_vjps():
    """polyphase.upsample2d / downsample2d (the ADA pipeline's 2x resamplers, with its 12-tap
    sym6 low-pass and the crop it uses) equal fir's, and their custom VJPs equal the autodiff
    VJPs of fir's convolution form."""
    sym6 = np.array([0.0154041093, 0.0034907121, -0.1179901158, -0.0483117426, 0.4910559419,
                     0.7876411410, 0.3379294217, -0.0726375228, -0.0210602925, 0.0447249018,
                     0.0017677119, -0.0078007083])
    hz = fir.setup_filter(sym6)
    rng = np.random.RandomState(0)
    cases = [
        (lambda x: polyphase.upsample2d(x, hz, 2), lambda x: fir.upsample2d(x, hz, up=2),
         (2, 7, 9, 3)),
        (lambda x: polyphase.downsample2d(x, hz, 2, padding=-6, flip_filter=True),
         lambda x: fir.downsample2d(x, hz, down=2, padding=-6, flip_filter=True),
         (2, 26, 30, 1)),
    ]
    for fn, ref, shape in cases:
        x = jnp.asarray(rng.randn(*shape).astype(np.float32))
        cotangent = jnp.asarray(rng.randn(*jax.eval_shape(fn, x).shape).astype(np.float32))

        @jax.jit
        def both(x, cotangent, fn=fn, ref=ref):
            (y, vjp), (y_ref, vjp_ref) = jax.vjp(fn, x), jax.vjp(ref, x)
            return y, y_ref, vjp(cotangent)[0], vjp_ref(cotangent)[0]

        y, y_ref, dx, dx_ref = both(x, cotangent)
        # 12-tap float32 sums of N(0, 1) values in another order: ~1e-6; a wrong phase or
        # filter flip is O(0.1).
        np.testing.assert_allclose(y, y_ref, atol=1e-5)
        np.testing.assert_allclose(dx, dx_ref, atol=1e-5)
