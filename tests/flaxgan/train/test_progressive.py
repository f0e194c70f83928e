"""StyleGAN v1 progressive growing: the official schedule, reals fade, lod and Adam resets."""

from __future__ import annotations

import ast
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import celeba256, common
from flaxgan.models import stylegan1 as s1
from flaxgan.train import progressive
from flaxgan.train import state as state_lib
from flaxgan.train import step as step_lib
from tests.conftest import REPO_ROOT

OFFICIAL = progressive.Schedule.from_config(common.official_schedule().to_dict())

# (kimg, lod, resolution, minibatch, G/D lrate, tick kimg) of the official 8-GPU schedule of
# NVlabs/stylegan train.py at 256², worked out by hand from `training_schedule`: 8² first
# (lod 5), then 600 kimg stable + 600 kimg fade-in per doubling.
TABLE_256 = [
    (0, 5.0, 8, 256, 0.001, 140),
    (600, 5.0, 8, 256, 0.001, 140),
    (900, 4.5, 16, 128, 0.001, 120),  # halfway through the fade-in of 16²
    (1200, 4.0, 16, 128, 0.001, 120),
    (3000, 3.0, 32, 64, 0.001, 100),
    (4200, 2.0, 64, 32, 0.001, 80),  # 64² and up: minibatch_base 32
    (4500, 1.5, 128, 32, 0.0015, 60),
    (5400, 1.0, 128, 32, 0.0015, 60),
    (5700, 0.5, 256, 32, 0.002, 40),
    (6000, 0.0, 256, 32, 0.002, 40),
    (25000, 0.0, 256, 32, 0.002, 40),
]


@pytest.mark.parametrize("kimg,lod,res,minibatch,lrate,tick", TABLE_256)
def test_official_schedule_at_256(kimg, lod, res, minibatch, lrate, tick):
    stage = progressive.training_stage(kimg * 1000, 256, 8, OFFICIAL)
    assert stage.lod == pytest.approx(lod)
    assert (stage.resolution, stage.minibatch, stage.tick_kimg) == (res, minibatch, tick)
    assert stage.g_lrate == stage.d_lrate == pytest.approx(lrate)


def test_minibatch_rounding_per_gpu_cap_and_lrate_rampup():
    s = progressive.Schedule(lod_initial_resolution=8, minibatch_base=20,
                             max_minibatch_per_gpu={4: 1},
                             lrate_rampup_kimg=100, G_lrate_base=0.002)
    assert progressive.training_stage(0, 8, 8, s).minibatch == 16  # 20 - 20 % 8
    assert progressive.training_stage(0, 4, 8, s).minibatch == 8  # 1 per GPU at 4²
    assert progressive.training_stage(50_000, 8, 8, s).g_lrate == pytest.approx(0.001)
    assert progressive.data_batch_size(OFFICIAL, 8) == 32  # gcd(512, 256, ..., 32)
    one_gpu = progressive.Schedule(minibatch_base=4, minibatch_dict={4: 128, 256: 8})
    assert progressive.data_batch_size(one_gpu, 1) == 4


def _official_training_schedule():
    """The official `training_schedule` function, run with numpy and a stub `dnnlib` (its
    module imports TensorFlow, so only the function's own code is compiled)."""
    path = REPO_ROOT / "third_party" / "stylegan" / "training" / "training_loop.py"
    if not path.is_file():
        pytest.skip("third_party/stylegan not cloned")
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef)
              and n.name == "training_schedule")
    namespace = {"np": np, "dnnlib": types.SimpleNamespace(EasyDict=types.SimpleNamespace)}
    exec(compile(ast.Module([fn], []), str(path), "exec"), namespace)  # noqa: S102
    return namespace["training_schedule"]


def test_schedule_equals_the_official_function_everywhere():
    official = _official_training_schedule()
    kwargs = common.official_schedule().to_dict()
    for key in [k for k in kwargs if k.endswith(("_dict", "_per_gpu"))]:
        kwargs[key] = {int(r): v for r, v in kwargs[key].items()}
    for resolution, num_gpus in ((256, 8), (64, 1), (1024, 4)):
        dataset = types.SimpleNamespace(resolution_log2=int(np.log2(resolution)))
        for nimg in np.linspace(0, 26_000_000, 521).astype(int):
            want = official(nimg, dataset, num_gpus, **kwargs)
            got = progressive.training_stage(int(nimg), resolution, num_gpus, OFFICIAL)
            assert got.lod == want.lod and got.resolution == want.resolution
            assert (got.minibatch, got.tick_kimg) == (want.minibatch, want.tick_kimg)
            assert (got.g_lrate, got.d_lrate) == (want.G_lrate, want.D_lrate)


@pytest.mark.parametrize("prev,lod,reset", [
    (-1.0, 5.0, True),  # the first step
    (5.0, 5.0, False),
    (5.0, 4.99, True),  # a fade-in starts: new layers
    (4.6, 4.5, False),  # within a fade-in
    (4.01, 4.0, True),  # the fade-in ends
    (0.0, 0.0, False),
])
def test_optimizer_reset_when_layers_appear_or_the_fade_ends(prev, lod, reset):
    assert progressive.needs_optimizer_reset(prev, lod) is reset


def _nearest_level(x: np.ndarray, k: int) -> np.ndarray:
    """Box average over 2^k blocks, upscaled back (the official dataset level k, NHWC)."""
    n, h, w, c = x.shape
    f = 2**k
    y = x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))
    return np.repeat(np.repeat(y, f, axis=1), f, axis=2)


def test_fade_reals_is_the_official_process_reals_and_compiles_once():
    x = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    fade = jax.jit(progressive.fade_reals)
    np.testing.assert_allclose(fade(x, 0.0), x, atol=1e-6)
    for lod in (1.0, 2.0):
        np.testing.assert_allclose(fade(x, lod), _nearest_level(x, int(lod)), atol=1e-6)
    # Within a fade: level k crossfaded with level k + 1 (its own 2x2 average).
    want = _nearest_level(x, 1) + 0.25 * (_nearest_level(x, 2) - _nearest_level(x, 1))
    np.testing.assert_allclose(fade(x, 1.25), want, atol=1e-6)
    np.testing.assert_allclose(fade(x, 5.0), _nearest_level(x, 2), atol=1e-6)  # 4² at most
    assert fade._cache_size() == 1


def _tiny_state(hp: step_lib.Hyperparameters):
    G = s1.G_style(resolution=8, num_channels=3, latent_size=8, dlatent_size=8,
                   mapping_layers=1, mapping_fmaps=8, fmap_base=16, fmap_max=8)
    D = s1.D_basic(resolution=8, num_channels=3, fmap_base=16, fmap_max=8)
    g_vars, d_vars = state_lib.init_variables(G, D, jax.random.key(0), 8, 3, 0)
    g_opt, d_opt = step_lib.make_optimizers(hp)
    return state_lib.create_state(g_vars, d_vars, g_opt, d_opt, jax.random.key(1))


def test_plan_sets_lod_everywhere_learning_rates_and_resets_adam():
    hp = step_lib.Hyperparameters(batch_size=8, progressive=True, g_reg_interval=None,
                                  d_reg_interval=None, pl_weight=0.0)
    schedule = progressive.Schedule(lod_training_kimg=1, lod_transition_kimg=1,
                                    minibatch_base=8, G_lrate_dict={8: 0.003})
    plan = progressive.ProgressivePlan(schedule, hp, resolution=8, num_devices=1)
    state = _tiny_state(hp)
    # Moments as after some steps, to see which configure calls reset them.
    state = state.replace(g_opt_state=jax.tree.map(lambda x: x + 1, state.g_opt_state))
    plan.start(state, resumed=True)  # lod buffer 0 -> the stage at 1.5 kimg (0.5) resets
    stage = plan.stage(1500)
    assert (stage.lod, stage.resolution, stage.g_lrate) == (0.5, 8, 0.003)
    state = plan.configure(state, stage)
    lods = [v for p, v in jax.tree_util.tree_leaves_with_path(
        {"g": state.g_buffers, "d": state.d_buffers}) if p[-1].key == "lod"]
    assert len(lods) == 3 and all(float(v) == 0.5 for v in lods)  # G, G_synthesis, D
    inner = state.g_opt_state.inner_state
    assert all(float(jnp.max(jnp.abs(m))) == 0 for m in jax.tree.leaves(inner[0].mu))
    assert float(state.g_opt_state.hyperparams["learning_rate"]) == pytest.approx(0.003)
    assert float(state.d_opt_state.hyperparams["learning_rate"]) == pytest.approx(0.001)
    moved = state.replace(g_opt_state=jax.tree.map(lambda x: x + 1, state.g_opt_state))
    state = plan.configure(moved, plan.stage(1600))  # still fading in: moments kept
    assert all(float(jnp.min(m)) >= 1 for m in jax.tree.leaves(
        state.g_opt_state.inner_state[0].mu))


def test_weight_zero_regulariser_leaves_the_main_phase_and_d_first_order():
    hp = step_lib.Hyperparameters(g_reg_interval=None, d_reg_interval=None, pl_weight=0.0,
                                  d_first=True)
    assert [p.name for p in step_lib.phases(hp)] == ["Dboth", "Gmain"]
    assert isinstance(step_lib.make_optimizers(hp)[0], optax.GradientTransformation)


def test_stylegan1_configs_build():
    config = celeba256.get_config("stylegan1")
    assert config.model.G_class == "training.networks_stylegan.G_style"
    assert config.train.progressive and config.train.r1_gamma == 10.0
    assert config.train.ema_kimg == 10.0 and config.train.ema_rampup is None
    assert config.data.xflip
    from experiments.configs import casia256, smoke  # noqa: PLC0415
    assert casia256.get_config("stylegan1").data.name == "casia_webface/mtcnn_256"
    tiny = smoke.get_config("stylegan1")
    stages = [progressive.training_stage(n, 16, 1, progressive.Schedule.from_config(
        tiny.schedule.to_dict())) for n in (0, 300, 500, 800, 1000)]
    assert [s.lod for s in stages] == pytest.approx([2.0, 1.8, 1.0, 0.8, 0.0])
    assert pathlib.Path(tiny.data.name).is_dir()
