import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.nn import conv
from flaxgan.nn.fir import filter_size, setup_filter
from tests.flaxgan.nn import reference_ops


def _naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    """Upsample (zero insertion + FIR), pad, convolve, FIR-downsample — the textbook order."""
    fw, fh = filter_size(f)
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    if not flip_weight:
        w = w[::-1, ::-1]
    pads = (px0, px1, py0, py1)
    if up > 1:
        x = reference_ops.upfirdn2d(x, f, up=up, padding=pads, gain=up * up)
    else:
        x = reference_ops.pad_or_crop(x, *pads)
    x = reference_ops.correlate2d(x, w, groups)
    if down > 1:
        x = reference_ops.upfirdn2d(x, f, down=down)
    return x


@pytest.mark.parametrize(
    "kernel, up, down, groups, flip_weight",
    [
        (3, 1, 1, 1, True),
        (3, 2, 1, 1, False),
        (3, 1, 2, 1, True),
        (1, 2, 1, 1, False),
        (1, 1, 2, 1, True),
        (3, 2, 1, 2, False),
        (3, 1, 1, 2, False),
        (2, 1, 1, 1, True),  # asymmetric padding: general path
    ],
)
def test_conv2d_resample_matches_naive(kernel, up, down, groups, flip_weight):
    rng = np.random.default_rng(1)
    x = rng.standard_normal([2, 8, 8, 4]).astype(np.float32)
    w = rng.standard_normal([kernel, kernel, 4 // groups, 6]).astype(np.float32)
    f = setup_filter([1, 3, 3, 1])
    # Jitted here and below: one program instead of a compile per eager op (XLA's fusion moves
    # float32 results by ~1e-7, far inside the tolerances).
    got = jax.jit(lambda x, w: conv.conv2d_resample(
        x, w, f, up=up, down=down, padding=kernel // 2, groups=groups,
        flip_weight=flip_weight))(jnp.asarray(x), jnp.asarray(w))
    want = _naive_conv2d_resample(x, w, f, up, down, kernel // 2, groups, flip_weight)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_fused_equals_nonfused_and_explicit(up, demodulate):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal([3, 8, 8, 5]), jnp.float32)
    weight = jnp.asarray(rng.standard_normal([3, 3, 5, 4]), jnp.float32)
    styles = jnp.asarray(rng.standard_normal([3, 5]), jnp.float32)
    noise = jnp.asarray(rng.standard_normal([1, 8 * up, 8 * up, 1]), jnp.float32)
    f = setup_filter([1, 3, 3, 1])
    kwargs = dict(noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate,
                  flip_weight=(up == 1))
    modulated = lambda fused: jax.jit(lambda x, w, s: conv.modulated_conv2d(
        x, w, s, fused_modconv=fused, **kwargs))(x, weight, styles)
    fused = modulated(True)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(modulated(False)), atol=1e-4)

    @jax.jit
    def explicit(x, weight, styles):
        """Explicit per-sample weights (eq. 1 and 3 of the StyleGAN2 paper)."""
        out = []
        for i in range(3):
            wi = weight * styles[i][None, None, :, None]
            if demodulate:
                wi = wi / jnp.sqrt(jnp.sum(wi**2, axis=(0, 1, 2), keepdims=True) + 1e-8)
            out.append(conv.conv2d_resample(x[i:i + 1], wi, f, up=up, padding=1,
                                            flip_weight=(up == 1)) + noise)
        return jnp.concatenate(out)

    np.testing.assert_allclose(np.asarray(fused), np.asarray(explicit(x, weight, styles)),
                               atol=1e-4)


def test_modulated_conv2d_reduced_precision_stays_close():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal([2, 8, 8, 16]), jnp.float32)
    weight = jnp.asarray(rng.standard_normal([3, 3, 16, 8]), jnp.float32)
    styles = jnp.asarray(rng.standard_normal([2, 16]) * 50, jnp.float32)  # would overflow fp16
    ref = conv.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False)
    low = conv.modulated_conv2d(x.astype(jnp.bfloat16), weight, styles, padding=1,
                                fused_modconv=False)
    assert low.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(low, np.float32)))
    np.testing.assert_allclose(np.asarray(low, np.float32), np.asarray(ref), atol=0.1, rtol=0.05)


def test_modulated_conv2d_checks_style_shape():
    with pytest.raises(ValueError, match="styles"):
        conv.modulated_conv2d(jnp.ones([2, 4, 4, 3]), jnp.ones([3, 3, 3, 2]), jnp.ones([2, 4]))


def test_conv2d_resample_is_differentiable():
    x = jnp.ones([1, 4, 4, 2])
    w = jnp.ones([3, 3, 2, 2])
    g = jax.jit(jax.grad(
        lambda w: conv.conv2d_resample(x, w, setup_filter([1, 3, 3, 1]), up=2).sum()))(w)
    assert g.shape == w.shape and np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("kernel,up,padding,groups", [
    (3, 2, (2, 2), 1), (3, 2, (1, 2), 1), (3, 2, (0, 0), 2), (4, 2, (3, 1), 1), (1, 2, (0, 0), 1),
    (3, 3, (2, 1), 1), (5, 4, (4, 2), 3)])
def test_sub_pixel_upsampling_conv_equals_the_zero_stuffed_correlation(kernel, up, padding,
                                                                       groups):
    rng = np.random.default_rng(kernel * 10 + up)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 3 * groups)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 2 * groups)), jnp.float32)
    stuffed = jax.lax.conv_general_dilated(
        x, w, (1, 1), [(padding[0],) * 2, (padding[1],) * 2], lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    sub_pixel = conv.upsampling_conv2d(x, w, padding, groups, up)
    assert sub_pixel.shape == stuffed.shape
    # The same <= 75 products per output summed in another order: float32 rounding only.
    np.testing.assert_allclose(sub_pixel, stuffed, rtol=1e-5, atol=1e-5)


def _lax_conv(x, w, stride, padding):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(padding[0],) * 2,
                                                                 (padding[1],) * 2],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("kernel,stride,padding", [
    (3, 1, (1, 1)), (3, 2, (0, 0)), (1, 1, (0, 0)), (2, 1, (0, 0)), (3, 2, (2, 1)),
    (4, 1, (3, 3)), (4, 2, (1, 1)), (3, 3, (1, 0)), (1, 2, (0, 0)), (2, 2, (0, 1))])
def test_conv2d_gradients_equal_xla(kernel, stride, padding):
    """`conv2d` in value, gradients and the second derivatives of R1 / path length (gradient of
    a gradient norm), against `lax.conv_general_dilated` (strided layers: the input gradient
    through the transposed convolution; odd and even sizes, kernels shorter and longer than
    the stride, rows the strided form never reads)."""
    rng = np.random.default_rng(kernel * 10 + stride)
    x = jnp.asarray(rng.normal(size=(2, 14, (9 - 1) * stride + kernel - 2 * padding[1] + 1, 3)),
                    jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
    target = jnp.asarray(rng.normal(size=_lax_conv(x, w, stride, padding).shape), jnp.float32)

    def derivatives(f):
        loss = lambda x, w: jnp.sum(jnp.sin(f(x, w, stride, padding)) * target)
        r1 = lambda x, w: jnp.sum(jnp.square(jax.grad(loss)(x, w)))
        path_length = lambda x, w: jnp.sum(jnp.square(jax.grad(loss, 1)(x, w)))
        return [jax.grad(g, (0, 1))(x, w) for g in (loss, r1, path_length)]

    np.testing.assert_array_equal(conv.conv2d(x, w, stride, padding),
                                  _lax_conv(x, w, stride, padding))
    got = jax.jit(lambda: derivatives(conv.conv2d))()
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(derivatives(_lax_conv)), strict=True):
        # The same products summed in another order (scatter instead of stuffed correlation):
        # float32 rounding of sums of <= 14 * 9 * 2 terms, relative to the largest entry.
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5 * float(jnp.max(jnp.abs(r))))


def _zero_stuffed_transposed_conv(x, v, up):
    """The definition: the `up`-times zero-stuffed `x`, padded by `k - 1`, correlated with the
    flipped kernel."""
    kh, kw = v.shape[:2]
    return jax.lax.conv_general_dilated(
        x, jnp.flip(v, (0, 1)), (1, 1), [(kh - 1, kh - 1), (kw - 1, kw - 1)],
        lhs_dilation=(up, up), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("kernel,up,size", [
    ((3, 3), 2, (5, 6)), ((4, 4), 2, (4, 4)), ((1, 1), 2, (3, 5)), ((3, 2), 3, (4, 3)),
    ((5, 5), 4, (3, 3)), ((2, 3), 1, (4, 4))])
def test_transposed_conv2d_equals_the_zero_stuffed_correlation(kernel, up, size):
    """Value, gradients and the second derivatives of R1 / path length (gradient of a
    gradient norm, with respect to the input and to the weights), kernels shorter and longer
    than the stride."""
    rng = np.random.default_rng(kernel[0] * 10 + up)
    x = jnp.asarray(rng.normal(size=(2, *size, 3)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(*kernel, 3, 4)), jnp.float32)
    want = _zero_stuffed_transposed_conv(x, v, up)
    assert want.shape == (2, up * (size[0] - 1) + kernel[0], up * (size[1] - 1) + kernel[1], 4)
    target = jnp.asarray(rng.normal(size=want.shape), jnp.float32)

    def derivatives(f):
        loss = lambda x, v: jnp.sum(jnp.sin(f(x, v, up)) * target)
        r1 = lambda x, v: jnp.sum(jnp.square(jax.grad(loss)(x, v)))
        path_length = lambda x, v: jnp.sum(jnp.square(jax.grad(loss, 1)(x, v)))
        return [jax.grad(g, (0, 1))(x, v) for g in (loss, r1, path_length)]

    # The same <= 25 products per output summed in another order: float32 rounding only.
    np.testing.assert_allclose(conv.transposed_conv2d(x, v, up), want, rtol=1e-5, atol=1e-5)
    got = jax.jit(lambda: derivatives(conv.transposed_conv2d))()
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(derivatives(
            _zero_stuffed_transposed_conv)), strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5 * float(jnp.max(jnp.abs(r))))


_MESH_LAYERS = {  # name: (flaxgan layer, its definition), both (x, w) -> y
    "conv2d": (lambda x, w: conv.conv2d(x, w, 2, (1, 1)), lambda x, w: _lax_conv(x, w, 2, (1, 1))),
    "transposed_conv2d": (lambda x, w: conv.transposed_conv2d(x, w, 2),
                          lambda x, w: _zero_stuffed_transposed_conv(x, w, 2))}


@pytest.mark.parametrize("layer", sorted(_MESH_LAYERS))
def test_custom_gradients_are_summed_over_the_mesh(layer):
    """Replicated weights, per-device batches (the training step's `shard_map`): the weight
    gradients of the custom-gradient layers (the strided convolution, the transposed one) are
    per device and JAX sums them over the mesh, as for XLA's own gradient (the gradient of a
    replicated input comes back replicated: already the sum, not 1/8 of it)."""
    layer_fn, definition = _MESH_LAYERS[layer]
    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    spec = jax.sharding.PartitionSpec
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2 * jax.device_count(), 6, 6, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    loss = lambda f: lambda w, x: jnp.sum(jnp.sin(f(x, w)))
    per_device = jax.shard_map(
        lambda w, x: jax.grad(loss(layer_fn))(w, x), mesh=mesh,
        in_specs=(spec(), spec("batch")), out_specs=spec())
    got = jax.jit(per_device)(
        jax.device_put(w, jax.sharding.NamedSharding(mesh, spec())),
        jax.device_put(x, jax.sharding.NamedSharding(mesh, spec("batch"))))
    want = jax.grad(loss(definition))(w, x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(want))))
