"""Sharded training phases: gradient scale over the mesh, EMA/ADA bookkeeping, no recompiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxgan import losses
from flaxgan.errors import InvalidArgument
from flaxgan.models import registry
from flaxgan.train import sharding
from flaxgan.train import state as state_lib
from flaxgan.train import step as step_lib
from tests.flaxgan.train import tiny_run as tiny

RES, BATCH = 16, 8


def _networks(mbstd_group_size: int = 1):
    G = registry.build_generator("training.networks.Generator", dict(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=RES, img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0)))
    D = registry.build_discriminator("training.networks.Discriminator", dict(
        c_dim=0, img_resolution=RES, img_channels=3, channel_base=128, channel_max=16,
        epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size)))
    return G, D


def _batch(mesh, seed=0, res=RES):
    rng = np.random.default_rng(seed)
    return sharding.global_batch({
        "image": rng.integers(0, 256, (BATCH, res, res, 3), dtype=np.uint8),
        "label": np.zeros((BATCH, 0), np.float32)}, mesh)


def _state(G, D, mesh, optimizers, ada_p=0.0, res=RES):
    g_vars, d_vars = state_lib.init_variables(G, D, jax.random.key(0), res, 3, 0)
    g_vars, d_vars = jax.tree.map(np.asarray, (g_vars, d_vars))  # fresh copies per state
    return sharding.replicate(state_lib.create_state(g_vars, d_vars, *optimizers,
                                                     jax.random.key(1), ada_p=ada_p), mesh)


def test_phases_follow_the_official_schedule():
    names = lambda hp: [(p.name, p.interval) for p in step_lib.phases(hp)]
    assert names(step_lib.Hyperparameters()) == [
        ("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    assert names(step_lib.Hyperparameters(g_reg_interval=None, d_reg_interval=None)) == [
        ("Gboth", 1), ("Dboth", 1)]
    # StyleGAN3: no path length -> no G reg phase, but lazy-reg optimizer settings remain.
    assert names(step_lib.Hyperparameters(pl_weight=0.0)) == [
        ("Gmain", 1), ("Dmain", 1), ("Dreg", 16)]


def test_lazy_regularization_optimizers():
    hp = step_lib.Hyperparameters(g_lr=0.01, betas=(0.5, 0.99), g_reg_interval=4)
    g_opt, _ = step_lib.make_optimizers(hp)
    params = {"w": jnp.zeros(3)}
    # First Adam step moves each parameter by lr * c (bias-corrected m / sqrt(v) = sign(g)).
    updates, _ = g_opt.update({"w": jnp.array([1.0, -2.0, 3.0])}, g_opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.01 * 0.8 * np.sign([1, -2, 3]), rtol=1e-5)


def _tf1_adam_reference(grads: np.ndarray, lr: float, b1: float, b2: float, eps: float):
    """TF 1's `AdamOptimizer` update, written from its documented formula in float64:
    lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; Δ = −lr_t·m/(√v + ε)."""
    m = v = np.zeros_like(grads[0])
    out = []
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        out.append(-lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps))
    return np.stack(out)


@pytest.mark.parametrize("progressive", [False, True])
def test_tf1_adam_is_tensorflows_formula_with_optax_state(progressive):
    """'tf1' Adam (StyleGAN v1's official optimizer) against TF's formula over 5 steps, with
    gradients from 1e-9 (where ε's placement decides the step) to 10; its state has optax
    Adam's structure (checkpoints and the progressive Adam reset serve both)."""
    hp = step_lib.Hyperparameters(g_lr=0.01, betas=(0.5, 0.99), eps=1e-8, g_reg_interval=None,
                                  adam="tf1", progressive=progressive)
    g_opt, _ = step_lib.make_optimizers(hp)
    rng = np.random.RandomState(0)
    grads = rng.randn(5, 6) * 10.0 ** np.arange(-9, 3, 2)  # columns: 1e-9 ... 10
    params = {"w": jnp.zeros(6)}
    state = g_opt.init(params)
    got = []
    for g in grads:
        updates, state = g_opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        got.append(np.asarray(updates["w"]))
    want = _tf1_adam_reference(grads, 0.01, 0.5, 0.99, 1e-8)
    # float32 arithmetic on float32-rounded gradients: a few ulp of each update.
    np.testing.assert_allclose(np.stack(got), want, rtol=1e-5)
    # optax's placement differs exactly where the gradient is not far above ε.
    optax_first = -0.01 * grads[0] / (np.abs(grads[0]) + 1e-8)
    assert abs(want[0, 0] - optax_first[0]) > 0.5 * abs(optax_first[0])
    pytorch_opt, _ = step_lib.make_optimizers(
        step_lib.Hyperparameters(g_reg_interval=None, progressive=progressive))
    assert (jax.tree.structure(state) == jax.tree.structure(pytorch_opt.init(params)))
    with pytest.raises(InvalidArgument, match="train.adam must be one of"):
        step_lib.make_optimizers(step_lib.Hyperparameters(adam="adamw"))


def test_r1_gradient_is_the_global_batch_mean_on_8_devices():
    """The DESIGN pitfall: a wrong all-reduce gives N x the gradient. Plain SGD (lr 1) makes the
    parameter change equal to the gradient; 8 devices, 1 device and a direct computation must
    agree."""
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    G, D = _networks(mbstd_group_size=1)
    hp = step_lib.Hyperparameters(batch_size=BATCH, r1_gamma=3.0, d_reg_interval=4)
    sgd = (optax.sgd(1.0), optax.sgd(1.0))
    results = []
    for devices in (jax.devices(), jax.devices()[:1]):
        mesh = sharding.make_mesh(devices)
        steps = step_lib.make_train_steps(G, D, hp, mesh, optimizers=sgd)
        state = _state(G, D, mesh, sgd)
        before = jax.tree.map(np.asarray, state.d_params)
        state, metrics = steps.run_phase["Dreg"](state, _batch(mesh))
        results.append((before, jax.tree.map(np.asarray, state.d_params), metrics))

    (before, after8, metrics8), (_, after1, metrics1) = results
    real = jnp.asarray(np.asarray(_batch(sharding.make_mesh(jax.devices()[:1]))["image"]),
                       jnp.float32) / 127.5 - 1

    def loss(params):
        penalty, _ = losses.r1_penalty(lambda x: D.apply({"params": params}, x), real)
        return jnp.mean(penalty * hp.r1_gamma / 2) * hp.d_reg_interval

    want = jax.tree.map(lambda p, g: p - g, before, jax.jit(jax.grad(loss))(before))
    # Second-order gradients summed in another order per device count: ~1e-6 relative; the
    # pitfall is a factor of 8.
    for got in (after8, after1):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     got, want)
    np.testing.assert_allclose(metrics8["Loss/r1_penalty"], metrics1["Loss/r1_penalty"],
                               rtol=1e-4)


@pytest.fixture(scope="module")
def trained():
    """Four iterations of every phase on 8 devices with ADA on ('bgc'); compile events recorded.

    The phases are those `loop.train` runs for `tiny_run.config` (8², 16 channels; ADA every 2nd
    iteration by batch * 2 / 1000; no EMA ramp-up): when the loop's tests ran first on this
    worker, nothing is compiled here."""
    mesh = sharding.make_mesh()
    G, D, hp, steps = tiny.networks_and_steps(mesh)
    res = tiny.RESOLUTION
    state = _state(G, D, mesh, step_lib.make_optimizers(hp), ada_p=0.2, res=res)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    history = []
    for i in range(4):
        before = jax.tree.map(np.asarray, state)
        compiles_before = len(compiles)
        state, metrics = steps.iteration(state, _batch(mesh, seed=i, res=res), i)
        history.append((before, jax.device_get(metrics), len(compiles) - compiles_before))
    return hp, history, jax.tree.map(np.asarray, state)


def test_no_recompilation_after_the_first_iterations(trained):
    _, history, _ = trained
    # Iterations 0 and 1 compile the phases (1 runs no reg phases); 2 and 3 must reuse them.
    assert [n for _, _, n in history[2:]] == [0, 0]


def test_counters_losses_and_regularizers(trained):
    hp, history, final = trained
    assert int(final.step) == 4 and int(final.nimg) == 4 * BATCH
    assert {"Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/pl_penalty"} <= set(
        history[0][1])
    assert "Loss/r1_penalty" not in history[1][1]  # reg phases every 2nd iteration
    for _, metrics, _ in history:
        assert all(np.isfinite(v) for v in metrics.values())
    assert float(final.pl_mean) > 0


def test_generator_ema_follows_the_official_half_life(trained):
    hp, history, final = trained
    # After iteration 3 the EMA is lerp(G, previous EMA, beta) of the G that iteration made.
    before = history[3][0]
    beta = 0.5 ** (hp.batch_size / (hp.ema_kimg * 1000))
    want = jax.tree.map(lambda g, e: g + beta * (e - g), final.g_params, before.ema_params)
    # One float32 lerp on the same machine, possibly written another way: a few ulp.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 final.ema_params, want)
    jax.tree.map(np.testing.assert_array_equal, final.ema_buffers, final.g_buffers)  # copies


def test_ada_p_moves_by_the_official_step(trained):
    hp, history, final = trained
    # Every 2nd iteration p moves by +-batch * interval / (ada_kimg * 1000) = 0.016.
    step = hp.batch_size * hp.ada_interval / (hp.ada_kimg * 1000)
    p = [float(h[0].ada_p) for h in history] + [float(final.ada_p)]
    assert p[0] == pytest.approx(0.2) and p[1] == pytest.approx(0.2)
    assert abs(p[2] - p[0]) == pytest.approx(step, rel=1e-4)
    assert abs(p[4] - p[2]) == pytest.approx(step, rel=1e-4)
    np.testing.assert_array_equal(final.ada_signs, [0.0, 0.0])


def test_blur_matches_the_official_formula():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 12, 12, 3)).astype(np.float32)
    sigma = 1.3
    radius = int(np.floor(sigma * 3))
    taps = np.exp2(-np.square(np.arange(-radius, radius + 1) / sigma))
    taps /= taps.sum()
    padded = np.pad(img, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    rows = sum(t * padded[:, i:i + 12] for i, t in enumerate(taps))
    want = sum(t * rows[:, :, i:i + 12] for i, t in enumerate(taps))
    got = losses.blur_images(jnp.asarray(img), jnp.float32(sigma), max_sigma=10.0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(losses.blur_images(jnp.asarray(img), jnp.float32(0.0), 10.0),
                                  img)
    assert float(losses.blur_sigma(jnp.int32(5000), 10.0, 10.0)) == pytest.approx(5.0)
    assert float(losses.blur_sigma(jnp.int32(20000), 10.0, 10.0)) == 0.0


def test_stylegan3_r_trains_with_its_official_objective():
    """Config R in the same phases: no path length / style mixing, EMAs updated only in D main,
    blurred D inputs early on; two iterations stay finite and move G and D."""
    G = registry.build_generator("training.networks_stylegan3.Generator", dict(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=RES, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=8, num_fp16_res=0,
        conv_kernel=1, use_radial_filters=True, num_layers=3))  # 3 of 14 layers: the objective,
    # not the depth, is under test (and the gradient program's compile time scales with it)
    D = registry.build_discriminator("training.networks_stylegan2.Discriminator", dict(
        c_dim=0, img_resolution=RES, img_channels=3, architecture="orig", channel_base=128,
        channel_max=8, num_fp16_res=0, epilogue_kwargs=dict(mbstd_group_size=1)))
    hp = step_lib.Hyperparameters(batch_size=BATCH, pl_weight=0.0, style_mixing_prob=0.0,
                                  d_lr=0.002, r1_gamma=0.5, d_reg_interval=2,
                                  ema_update_phases=("Dmain",), blur_init_sigma=10.0,
                                  blur_fade_kimg=1.0)
    assert [p.name for p in step_lib.phases(hp)] == ["Gmain", "Dmain", "Dreg"]
    mesh = sharding.make_mesh()
    steps = step_lib.make_train_steps(G, D, hp, mesh)
    state = _state(G, D, mesh, step_lib.make_optimizers(hp))
    before = jax.tree.map(np.asarray, state)
    for i in range(2):
        state, metrics = steps.iteration(state, _batch(mesh, seed=i), i)
        assert all(np.isfinite(float(v)) for v in metrics.values())
    after = jax.tree.map(np.asarray, state)
    changed = lambda a, b: any(not np.array_equal(x, y) for x, y in
                               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert changed(before.g_params, after.g_params) and changed(before.d_params, after.d_params)
    # magnitude EMAs moved (D main updates them), and the EMA copy follows G's buffers.
    assert changed(before.g_buffers, after.g_buffers)
    jax.tree.map(np.testing.assert_array_equal, after.ema_buffers, after.g_buffers)


def test_generated_labels_follow_the_class_frequencies():
    # The official labels each fake with a random training example's label: independent
    # draws from the class frequencies, not a reordering of the batch.
    labels = jax.nn.one_hot(jnp.zeros((4000,), jnp.int32), 3)  # a batch of class 0 only
    drawn = step_lib.generated_labels(jax.random.key(0), labels, (0.0, 0.25, 0.75))
    assert drawn.shape == (4000, 3) and bool(jnp.all(jnp.sum(drawn, 1) == 1))
    share = np.asarray(jnp.mean(drawn, 0))
    # 4000 Bernoulli(0.25) draws: standard error 0.007; 0.03 is over four of them.
    np.testing.assert_allclose(share, [0.0, 0.25, 0.75], atol=0.03)
    # Without frequencies: the batch's own labels, permuted (the same multiset of rows).
    mixed = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    permuted = step_lib.generated_labels(jax.random.key(1), mixed)
    np.testing.assert_array_equal(jnp.sum(permuted, 0), jnp.sum(mixed, 0))
    assert step_lib.generated_labels(jax.random.key(2), jnp.zeros((5, 0)), None).shape == (5, 0)
    G, D = _networks()  # unconditional: class frequencies are a mistake, said at build time
    with pytest.raises(ValueError, match="expected 0 class probabilities, got 2"):
        step_lib.make_train_steps(G, D, step_lib.Hyperparameters(batch_size=BATCH),
                                  sharding.make_mesh(), class_probs=(0.5, 0.5))
