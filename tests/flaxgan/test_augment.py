"""ADA augmentation: parity with the official AugmentPipe given its own random draws, identity at
p = 0, firing rates, gradients, no recompilation for a new p, and the adaptive-p update."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import augment as A
from tests.conftest import TEST_DATA

REFERENCE = TEST_DATA / "augment"
_META = json.loads((REFERENCE / "augment.json").read_text())
_CASES = {case["name"]: case for case in _META["cases"]}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "augment.npz") as data:
        return dict(data)


def official_draws(case: dict, arrays: dict[str, np.ndarray]) -> A.Draws:
    """Regroups the official pipeline's draws (in call order) into `sample_draws`' structure.

    The official draws, for every enabled transform in order, a value and then a gate; the
    rotation twice (before and after the anisotropic scaling); hue and saturation only for RGB;
    the image filter a (value, gate) per band; noise (sigma, gate, field NCHW); cutout (gate,
    centre)."""
    n, _, _, c = case["shape"]
    config = A.AugmentConfig(**case["kwargs"])
    recorded = iter(arrays[f"{case['name']}/draw_{k:02d}"] for k in range(len(case["draws"])))
    draws: A.Draws = {}
    for name in A.GEOMETRIC + A.COLOR:
        multiplier = config.rotate if name.startswith("rotate_") else getattr(config, name)
        if multiplier <= 0 or (name in ("hue", "saturation") and c == 1):
            continue
        value, gate = next(recorded), next(recorded)
        value = value.reshape(n, 2) if name in ("xint", "xfrac") else value.reshape(n)
        draws[name] = {"value": value, "gate": gate.reshape(n)}
    if config.imgfilter > 0:
        values, gates = zip(*[(next(recorded), next(recorded)) for _ in range(4)], strict=True)
        draws["imgfilter"] = {"value": np.stack(values, 1), "gate": np.stack(gates, 1)}
    if config.noise > 0:
        value, gate, field = next(recorded), next(recorded), next(recorded)
        draws["noise"] = {"value": value.reshape(n), "gate": gate.reshape(n),
                          "field": field.transpose(0, 2, 3, 1)}
    if config.cutout > 0:
        gate, center = next(recorded), next(recorded)
        draws["cutout"] = {"gate": gate.reshape(n), "center": center.reshape(n, 2)}
    assert next(recorded, None) is None, "unconsumed official draws"
    return draws


def _images(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    return arrays[f"{name}/input_uint8"].astype(np.float32) / 127.5 - 1


@pytest.mark.parametrize("name", list(_CASES))
def test_parity_with_official(reference, name):
    """Same draws -> same images as the official pipeline, over the whole image (borders
    included: the batch's reflect padding and its clamp are reproduced)."""
    case = _CASES[name]
    config = A.AugmentConfig(**case["kwargs"])
    draws = official_draws(case, reference)
    out = A.augment_with_draws(jnp.asarray(_images(reference, name)), draws, case["p"], config,
                               skip_identity=False)
    expected = reference[f"{name}/output"]
    assert out.shape == expected.shape
    err = np.abs(np.asarray(out) - expected)
    assert err.max() <= 1e-4, f"{name}: max |error| {err.max():.2e}"
    # Our own sampler makes draws of the same structure, shapes and dtypes.
    ours = A.sample_draws(jax.random.key(0), tuple(case["shape"]), config)
    assert jax.tree.structure(ours) == jax.tree.structure(draws)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(draws),
                                                  strict=True))


def test_parity_fails_with_shifted_draws(reference):
    """The comparison has teeth: the next sample's draws give a different image."""
    case = _CASES["bgc_64"]
    draws = jax.tree.map(lambda d: np.roll(d, 1, axis=0), official_draws(case, reference))
    out = A.augment_with_draws(jnp.asarray(_images(reference, "bgc_64")), draws, case["p"],
                               A.AugmentConfig(**case["kwargs"]))
    assert np.abs(np.asarray(out) - reference["bgc_64/output"]).max() > 0.1


def test_presets_match_official_augpipe_names():
    assert set(A.AUGPIPE_SPECS) == {"blit", "geom", "color", "filter", "noise", "cutout", "bg",
                                    "bgc", "bgcf", "bgcfn", "bgcfnc"}
    bgc = A.AugmentConfig.preset("bgc")
    assert (bgc.xflip, bgc.rotate90, bgc.xint, bgc.scale, bgc.rotate, bgc.aniso, bgc.xfrac,
            bgc.brightness, bgc.contrast, bgc.lumaflip, bgc.hue, bgc.saturation) == (1.0,) * 12
    assert (bgc.imgfilter, bgc.noise, bgc.cutout) == (0.0, 0.0, 0.0)
    assert (bgc.xint_max, bgc.scale_std, bgc.rotate_max, bgc.aniso_std, bgc.xfrac_std,
            bgc.brightness_std, bgc.contrast_std, bgc.hue_max, bgc.saturation_std,
            bgc.imgfilter_std, bgc.noise_std, bgc.cutout_size) == (
        0.125, 0.2, 1.0, 0.2, 0.125, 0.2, 0.5, 1.0, 1.0, 1.0, 0.1, 0.5)
    assert A.AugmentConfig.preset("bgcfnc", noise_std=0.2).noise_std == 0.2
    with pytest.raises(ValueError, match="unknown augpipe"):
        A.AugmentConfig.preset("bgcx")


def test_p_zero_is_identity(reference):
    x = jnp.asarray(_images(reference, "bgcfnc_32"))
    out = A.augment(x, jax.random.key(1), 0.0, A.AugmentConfig.preset("bgcfnc"))
    # Exact but for the image filter, which at unit gains is the identity up to the float32
    # rounding of its band sums (~1e-6); an applied transform moves pixels by >0.1.
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_firing_rates():
    """Each transform fires for a fraction multiplier·p of the samples (rotation: pre OR post),
    and changes the parameter with the probability of a non-identity value."""
    n = 4000
    config = A.AugmentConfig.preset("bgcfnc")
    draws = jax.jit(A.sample_draws, static_argnums=(1, 2))(jax.random.key(2), (n, 8, 8, 3),
                                                          config)
    resolve = jax.jit(A.resolve_params, static_argnums=2)
    identity = {"scale": 1.0, "aniso": 1.0, "contrast": 1.0, "saturation": 1.0}
    for p in (1.0, 0.3):
        params = resolve(draws, p, config)
        changed = {k: np.asarray(v != identity.get(k, 0.0)) for k, v in params.items()}
        rates = {k: v.reshape(n, -1).any(axis=1).mean() for k, v in changed.items()}
        rates["rotate"] = (changed["rotate_pre"] | changed["rotate_post"]).mean()
        rates["imgfilter"] = np.asarray(params["imgfilter"] != 1.0).any(axis=1).mean()
        expected = {"xflip": p / 2, "rotate90": p * 3 / 4, "xint": p, "scale": p, "rotate": p,
                    "aniso": p, "xfrac": p, "brightness": p, "contrast": p, "lumaflip": p / 2,
                    "hue": p, "saturation": p, "imgfilter": 1 - (1 - p) ** 4, "noise": p,
                    "cutout_size": p}
        for name, rate in expected.items():
            assert abs(rates[name] - rate) < 0.03, f"p={p} {name}: {rates[name]:.3f} vs {rate:.3f}"
    # The draws have their distributions: uniform gates, standard normal values.
    gates = np.concatenate([np.ravel(d["gate"]) for d in draws.values()])
    assert abs(gates.mean() - 0.5) < 0.01 and gates.min() >= 0 and gates.max() < 1
    normal = np.ravel(draws["noise"]["field"])
    assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1) < 0.01


@pytest.mark.parametrize("name,expected", [("xflip", 0.15), ("brightness", 0.3)])
def test_fraction_of_images_changed(reference, name, expected):
    """Pixel level: with p = 0.3 the changed images are ≈ the expected share."""
    faces = _images(reference, "bgcfnc_32")[:, ::4, ::4]            # 4 asymmetric 8x8 faces
    x = jnp.asarray(np.tile(faces, (250, 1, 1, 1)))
    out = A.augment(x, jax.random.key(3), 0.3, A.AugmentConfig(**{name: 1.0}))
    changed = np.abs(np.asarray(out) - np.asarray(x)).max(axis=(1, 2, 3)) > 1e-3
    assert abs(changed.mean() - expected) < 0.05, changed.mean()


def test_gradient_flows_to_images(reference):
    """augment is affine in the images for fixed draws: the gradient is finite, non-zero, and
    <∇f(x), v> = f(x + v) - f(x)."""
    config = A.AugmentConfig.preset("bgcfnc")
    x = jnp.asarray(_images(reference, "bgcfnc_32"))
    key = jax.random.key(4)
    weights = jax.random.normal(jax.random.key(5), x.shape)

    def f(images):
        return jnp.sum(A.augment(images, key, 0.8, config) * weights)

    value_and_grad = jax.jit(jax.value_and_grad(f))
    fx, grad = value_and_grad(x)
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0
    v = 0.1 * jax.random.normal(jax.random.key(6), x.shape)
    np.testing.assert_allclose(jnp.vdot(grad, v), value_and_grad(x + v)[0] - fx, rtol=1e-3)


def test_new_p_does_not_recompile():
    traces = []
    config = A.AugmentConfig.preset("bgc")

    @jax.jit
    def step(images, key, p):
        traces.append(1)
        return A.augment(images, key, p, config)

    x = jax.random.uniform(jax.random.key(7), (2, 16, 16, 3), minval=-1, maxval=1)
    outs = [step(x, jax.random.key(7), jnp.float32(p)) for p in (0.0, 0.3, 0.9)]
    assert len(traces) == 1
    # p = 0: the geometric step is skipped (lax.cond) and the colour matrix of identity
    # parameters is exactly I (cos 0, sin 0, exp2 0 are exact), so bgc returns x bit for bit.
    np.testing.assert_array_equal(outs[0], x)
    assert float(jnp.abs(outs[2] - x).max()) > 0.1


def test_ada_update_hand_computed():
    step = 32 * 4 / (500 * 1000)                                    # 0.000256
    p, r_t = A.ada_update(0.1, 6.0, 8, batch_size=32)              # r_t = 0.75 > 0.6: up
    assert float(r_t) == 0.75
    np.testing.assert_allclose(p, 0.1 + step, rtol=1e-6)
    p, _ = A.ada_update(0.1, -2.0, 8, batch_size=32)               # r_t = -0.25: down
    np.testing.assert_allclose(p, 0.1 - step, rtol=1e-6)
    p, _ = A.ada_update(0.0001, 0.0, 8, batch_size=32)             # down, clamped at 0
    assert float(p) == 0.0
    p, _ = A.ada_update(0.5, 3.0, 5, batch_size=32)                # r_t == target: unchanged
    np.testing.assert_allclose(p, 0.5)
    p, _ = A.ada_update(0.2, 8.0, 8, batch_size=64, interval=4, ada_kimg=100)
    np.testing.assert_allclose(p, 0.2 + 64 * 4 / 100_000, rtol=1e-6)
    p, r_t = A.ada_update(0.25, 8.0, 8, batch_size=32, target=None)  # fixed p
    assert float(p) == 0.25 and float(r_t) == 1.0
    p, r_t = A.ada_update(0.3, 0.0, 0, batch_size=32)              # nothing accumulated
    assert float(p) == np.float32(0.3) and np.isnan(float(r_t))
    sign_sum, count = A.real_sign_stats(jnp.asarray([[1.5], [-2.0], [0.0], [3.0]]))
    assert (float(sign_sum), float(count)) == (1.0, 4.0)
    # Jittable with traced p and statistics.
    p, _ = jax.jit(A.ada_update, static_argnames=("batch_size",))(0.1, 6.0, 8.0, batch_size=32)
    np.testing.assert_allclose(p, 0.1 + step, rtol=1e-6)


def test_grayscale_batch_one_bfloat16(reference):
    config = A.AugmentConfig.preset("bgcfnc")
    gray = jnp.asarray(_images(reference, "bgc_gray_32")[:1])        # [1, 32, 32, 1]
    assert set(A.sample_draws(jax.random.key(0), gray.shape, config)) == {
        *A.GEOMETRIC, "brightness", "contrast", "lumaflip", "imgfilter", "noise", "cutout"}
    out = A.augment(gray.astype(jnp.bfloat16), jax.random.key(8), 1.0, config)
    assert out.shape == gray.shape and out.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(out, np.float32)))
    assert float(jnp.abs(out.astype(jnp.float32) - gray).max()) > 0.1
    with pytest.raises(ValueError, match="RGB"):
        A.augment(jnp.zeros((1, 8, 8, 2)), jax.random.key(0), 1.0, A.AugmentConfig(brightness=1))
    with pytest.raises(ValueError, match="NHWC"):
        A.augment(jnp.zeros((8, 8, 3)), jax.random.key(0), 1.0, config)


def test_second_order_gradient():
    """R1 through augmentation: d/dθ ||∇_x D_θ(augment(x))||² is finite and non-zero."""
    augment = A.make_augment_fn("blit")
    x = jax.random.uniform(jax.random.key(10), (2, 16, 16, 3), minval=-1, maxval=1)
    key = jax.random.key(11)
    w = jax.random.normal(jax.random.key(12), (16, 16, 3))

    def penalty(theta):
        grad_x = jax.grad(lambda img: jnp.sum(jnp.tanh(theta * augment(img, key, 1.0) * w)))(x)
        return jnp.sum(jnp.square(grad_x))

    g = jax.jit(jax.grad(penalty))(jnp.float32(0.7))
    assert np.isfinite(float(g)) and float(g) != 0
