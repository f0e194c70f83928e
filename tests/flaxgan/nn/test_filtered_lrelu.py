import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from flaxgan.models.stylegan3 import design_lowpass_filter
from flaxgan.nn import fir
from flaxgan.nn.activation import bias_act
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
    # Jitted (filters and options as constants): one program, not a compile per eager op.
    fused = jax.jit(lambda x, b: filtered_lrelu(x, fu, fd, b, **kwargs))(x, b)

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


def _conv_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The former implementation: XLA depthwise (dilated / strided) convolutions."""
    x = fir.upfirdn2d(bias_act(x, b), fu, up=up, padding=padding, gain=up**2,
                      flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return fir.upfirdn2d(x, fd, down=down, flip_filter=flip_filter)


@pytest.mark.parametrize("seed", range(8))
def test_random_layers_match_the_convolution_version_with_gradients(seed):
    # SG3-like layers: up/down 1, 2 or 4, Kaiser filters (radial 2-D ones for config R),
    # padding chosen as `layer_schedule` does (negative = crop), odd sizes, clamp on or off.
    rng = np.random.default_rng(seed)
    up, down = [(2, 2), (4, 2), (2, 1), (1, 2), (1, 1), (2, 2), (4, 2), (2, 4)][seed]
    taps = 3
    fu = design_lowpass_filter(taps * up, 2.5, 3.0, 16 * up) if up > 1 else None
    fd = design_lowpass_filter(taps * down, 2.5, 3.0, 16 * down, radial=seed % 2 == 1) \
        if down > 1 else None
    h, w = int(rng.integers(5, 10)), int(rng.integers(5, 10))
    out_h = int(rng.integers(3, 8))
    ku, kd = (1 if fu is None else fu.shape[0]), (1 if fd is None else fd.shape[0])
    total = (out_h - 1) * down + 1 - h * up + ku + kd - 2
    lo = (total + up) // 2
    total_w = (out_h - 1) * down + 1 - w * up + ku + kd - 2
    lo_w = (total_w + up) // 2
    padding = (lo_w, total_w - lo_w, lo, total - lo)
    x = jnp.asarray(rng.standard_normal([2, h, w, 3]) * 2, jnp.float32)
    b = jnp.asarray(rng.standard_normal([3]), jnp.float32)
    kwargs = dict(up=up, down=down, padding=padding, gain=float(rng.uniform(0.5, 2)),
                  slope=float(rng.choice([0.2, 1.0])), clamp=[None, 1.5][seed % 2],
                  flip_filter=bool(seed % 3 == 0))

    # Jitted (filters and options closed over as constants): one program per function instead
    # of a compile per eager op.
    forward = lambda fn: jax.jit(lambda x, b: fn(x, fu, fd, b, **kwargs))
    gradient = lambda fn: jax.jit(jax.grad(
        lambda x, b, weights: jnp.sum(fn(x, fu, fd, b, **kwargs) * weights), argnums=(0, 1)))

    fast = forward(filtered_lrelu)(x, b)
    ref = forward(_conv_filtered_lrelu)(x, b)
    assert fast.shape == ref.shape == (2, out_h, (w * up + sum(padding[:2]) - ku - kd + 1)
                                       // down + 1, 3)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5)
    weights = jnp.asarray(rng.standard_normal(fast.shape), jnp.float32)
    grads = gradient(filtered_lrelu)(x, b, weights)
    grads_ref = gradient(_conv_filtered_lrelu)(x, b, weights)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-5, rtol=1e-5)
