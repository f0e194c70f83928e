"""Loss values and gradients of every phase against the official `StyleGAN2Loss` recordings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import convert, losses
from tests.conftest import reference_files
from tests.flaxgan.models import reference as ref

FILES = [p for p in reference_files("stylegan2")
         if any(k.startswith("grad/Gmain/") for k in ref.load(p)[0])]
pytestmark = pytest.mark.skipif(not FILES, reason="no reference file with loss recordings")


@pytest.fixture(scope="module", params=FILES, ids=[p.stem for p in FILES])
def setup(request):
    arrays, meta = ref.load(request.param)
    G, g_vars = ref.generator(arrays, meta)
    D, d_vars = ref.discriminator(arrays, meta)
    return arrays, meta, G, g_vars, D, d_vars


def _value_and_grad(loss_fn):
    """Jitted value-and-gradient of a phase: one XLA program instead of thousands of eager ops
    (the same arithmetic; XLA's fusion moves float32 results by ~1e-7, far inside 1e-4)."""
    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def _check_grads(arrays, phase: str, net: str, grads) -> None:
    parameters, _ = convert.from_flax({"params": jax.tree.map(np.asarray, grads)})
    keys = [k for k in arrays if k.startswith(f"grad/{phase}/{net}.")]
    assert keys and len(keys) == len(parameters)
    for key in keys:
        ref.assert_close(parameters[key[len(f"grad/{phase}/{net}."):]], arrays[key], key)


def _gen(G, g_vars, params, z, c):
    """Training-mode generator: non-fused modulated convs, constant noise (as recorded)."""
    variables = {**g_vars, "params": params}
    return ref.apply(G, variables, z, c, noise_mode="const", fused_modconv=False)


@pytest.fixture(scope="module")
def generator_main(setup):
    """The G main phase's `(logits, per-sample loss, fakes), G gradients`: its program also
    gives the D main phase its fakes (the same generator call, no second program)."""
    arrays, meta, G, g_vars, D, d_vars = setup
    z, c = jnp.asarray(arrays["io/z"]), ref.labels(arrays, meta)

    def loss_fn(params):
        fakes = _gen(G, g_vars, params, z, c)
        logits = D.apply(d_vars, fakes, c)
        per_sample = losses.generator_loss(logits)
        return jnp.mean(per_sample), (logits, per_sample, fakes)

    (_, aux), grads = _value_and_grad(loss_fn)(g_vars["params"])
    return aux, grads


def test_generator_main_phase(setup, generator_main):
    arrays = setup[0]
    (logits, per_sample, _), grads = generator_main
    ref.assert_close(logits, arrays["loss/Gmain/Loss/scores/fake"], "scores/fake")
    ref.assert_close(per_sample, arrays["loss/Gmain/Loss/G/loss"], "G/loss")
    _check_grads(arrays, "Gmain", "G", grads)


def test_generator_path_length_phase(setup):
    arrays, meta, G, g_vars, _, _ = setup
    shrink = meta["loss"]["pl_batch_shrink"]
    n = arrays["io/z"].shape[0] // shrink
    z, c = jnp.asarray(arrays["io/z"][:n]), ref.labels(arrays, meta)[:n]
    noise = ref.nhwc(arrays["io/pl_noise"])
    pl_weight, pl_decay = meta["loss"]["pl_weight"], meta["loss"]["pl_decay"]

    def loss_fn(params):
        variables = {**g_vars, "params": params}
        ws = G.apply(variables, z, c, method=G.map)
        synth = lambda w: G.apply(variables, w, noise_mode="const", fused_modconv=False,
                                  method=G.synthesize)
        penalty, pl_mean = losses.path_length_penalty(
            synth, ws, noise, jnp.asarray(arrays["io/pl_mean_before"]), pl_decay)
        return jnp.mean(penalty * pl_weight), (penalty, pl_mean)

    (_, (penalty, pl_mean)), grads = _value_and_grad(loss_fn)(g_vars["params"])
    ref.assert_close(penalty, arrays["loss/Greg/Loss/pl_penalty"], "pl_penalty")
    ref.assert_close(penalty * pl_weight, arrays["loss/Greg/Loss/G/reg"], "G/reg")
    ref.assert_close(pl_mean, arrays["io/pl_mean_after"], "pl_mean")
    _check_grads(arrays, "Greg", "G", grads)


def test_discriminator_main_phase(setup, generator_main):
    arrays, meta, _, _, D, d_vars = setup
    c = ref.labels(arrays, meta)
    (_, _, fake), _ = generator_main  # G(z) at the recorded parameters, a constant here
    real = ref.nhwc(arrays["io/d_real_img"])

    def loss_fn(params):
        variables = {**d_vars, "params": params}
        fake_logits, real_logits = D.apply(variables, fake, c), D.apply(variables, real, c)
        per_sample = losses.discriminator_loss(fake_logits, real_logits)
        return jnp.mean(per_sample), (fake_logits, real_logits, per_sample)

    (_, aux), grads = _value_and_grad(loss_fn)(d_vars["params"])
    fake_logits, real_logits, per_sample = aux
    ref.assert_close(fake_logits, arrays["loss/Dmain/Loss/scores/fake"], "scores/fake")
    ref.assert_close(real_logits, arrays["loss/Dmain/Loss/scores/real"], "scores/real")
    ref.assert_close(per_sample, arrays["loss/Dmain/Loss/D/loss"], "D/loss")
    _check_grads(arrays, "Dmain", "D", grads)


def test_discriminator_r1_phase(setup):
    arrays, meta, _, _, D, d_vars = setup
    c = ref.labels(arrays, meta)
    real = ref.nhwc(arrays["io/d_real_img"])
    gamma = meta["loss"]["r1_gamma"]

    def loss_fn(params):
        d = lambda x: D.apply({**d_vars, "params": params}, x, c)
        penalty, logits = losses.r1_penalty(d, real)
        return jnp.mean(penalty * gamma / 2), (penalty, logits)

    (_, (penalty, logits)), grads = _value_and_grad(loss_fn)(d_vars["params"])
    ref.assert_close(logits, arrays["loss/Dreg/Loss/scores/real"], "scores/real")
    ref.assert_close(penalty, arrays["loss/Dreg/Loss/r1_penalty"], "r1_penalty")
    ref.assert_close(penalty * gamma / 2, arrays["loss/Dreg/Loss/D/reg"], "D/reg")
    _check_grads(arrays, "Dreg", "D", grads)


def test_style_mixing_cutoff_and_probability():
    ws = jnp.zeros([3, 8, 2])
    other = jnp.ones([3, 8, 2])
    cutoffs = set()
    for seed in range(40):
        mixed = np.asarray(losses.mix_styles(jax.random.key(seed), ws, other, prob=0.9))
        per_layer = mixed[0, :, 0]
        cut = int(np.argmax(per_layer)) if per_layer.any() else 8
        assert np.all(per_layer[cut:] == 1) and np.all(per_layer[:cut] == 0)
        assert np.all(mixed == mixed[:1])  # one cutoff for the whole batch
        cutoffs.add(cut)
    assert 0 not in cutoffs and len(cutoffs) > 3
    np.testing.assert_array_equal(losses.mix_styles(jax.random.key(0), ws, other, prob=0.0), ws)


def test_lazy_regularization_and_ema():
    lr, betas = losses.lazy_regularization(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert losses.lazy_regularization(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    # 10 kimg half-life: after 10k images at batch 32 the old weights count 1/2.
    assert losses.ema_beta(32, 10, None) ** (10_000 / 32) == pytest.approx(0.5)
    assert losses.ema_beta(32, 10, 0.05, cur_nimg=1000) == pytest.approx(0.5 ** (32 / 50))
