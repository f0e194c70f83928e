"""StyleGAN (v1) networks: shapes, variables, truncation, style mixing, lod fade-in, noise, jit.

Tiny networks (8 channels, 8-dim latents); forward passes are jitted. Parity with the official
code is in test_stylegan1_parity.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.convert import tf_stylegan1
from flaxgan.errors import InvalidArgument
from flaxgan.models import build_discriminator, build_generator
from flaxgan.models import stylegan1 as s1

TINY = dict(fmap_base=64, fmap_max=8)
TINY_G = dict(latent_size=8, dlatent_size=8, mapping_layers=2, mapping_fmaps=8, **TINY)
RNGS = {"params": jax.random.key(0), "noise": jax.random.key(1)}


def _init(module, *args, seed: int = 0):
    """Random variables of `module` in the shapes `init` gives, drawn with NumPy (compiling
    `init` costs more than all the forward passes here): weights N(0, 1/lrmul) as the official
    initializer, biases 0.1·N(0, 1), `const` ones, noise strengths, `lod` and `dlatent_avg`
    zero, noise images N(0, 1)."""
    shapes = jax.eval_shape(lambda: module.init(RNGS, *args))
    rnd = np.random.RandomState(seed)
    lrmul = getattr(module, "mapping_lrmul", 1.0)

    def fill(path, leaf):
        name = "/".join(str(k.key) for k in path)
        if name.endswith(("Noise/weight", "lod", "dlatent_avg")):
            return jnp.zeros(leaf.shape)
        if name.endswith("const"):
            return jnp.ones(leaf.shape)
        scale = 0.1 if name.endswith("bias") else 1.0
        scale /= lrmul if "G_mapping/Dense" in name else 1.0
        return jnp.asarray(scale * rnd.randn(*leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _close(got, want, tol: float = 1e-5) -> None:
    """`max|got - want| <= tol · max(1, max|want|)` (float32 rounding of other op orders)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
    assert err <= tol, f"relative error {err:.3g} > {tol}"


def _shapes(module, *args, **kwargs):
    """Output and variable shapes, traced only (no computation)."""
    variables = jax.eval_shape(lambda: _init(module, *args, **kwargs))
    out = jax.eval_shape(lambda v: module.apply(v, *args, rngs=RNGS, **kwargs), variables)
    return out, variables


def _names(variables) -> dict[str, tuple[int, ...]]:
    return tf_stylegan1.from_flax(jax.tree.map(lambda x: np.zeros(x.shape, np.float32),
                                               variables))


def _with(variables, collection: str, name: str, value) -> dict:
    """A copy of `variables` with the entry at official `name` replaced."""
    out = jax.tree.map(lambda x: x, variables)
    *parents, leaf = name.split("/")
    node = out[collection]
    for key in parents:
        node = node[key]
    node[leaf] = jnp.asarray(value)
    return out


# ----------------------------------------------------------------------------- shapes, names


@pytest.mark.parametrize("res", [4, 16, 128])
@pytest.mark.parametrize("structure", ["fixed", "linear"])
def test_generator_and_discriminator_shapes(res, structure):
    G = s1.G_style(resolution=res, num_channels=3, structure=structure, **TINY_G)
    z = jnp.zeros([2, 8])
    img, g_vars = _shapes(G, z)
    assert img.shape == (2, res, res, 3)
    assert G.num_ws == s1.num_layers(res) == 2 * int(np.log2(res)) - 2
    names = _names(g_vars)
    lods = int(np.log2(res)) - 1 if structure == "linear" else 1
    assert sorted(n for n in names if "ToRGB" in n) == sorted(
        f"G_synthesis/ToRGB_lod{i}/{v}" for i in range(lods) for v in ("weight", "bias"))
    assert names["G_synthesis/4x4/Const/const"].shape == (1, 8, 4, 4)  # official NCHW
    assert names[f"G_synthesis/noise{G.num_ws - 1}"].shape == (1, 1, res, res)
    assert names["dlatent_avg"].shape == (8,) and names["lod"].shape == ()

    D = s1.D_basic(resolution=res, num_channels=3, structure=structure, **TINY)
    scores, d_vars = _shapes(D, jnp.zeros([4, res, res, 3]))
    assert scores.shape == (4, 1)
    assert sum("FromRGB" in n for n in _names(d_vars)) == 2 * lods


def test_official_variable_names_and_layouts():
    G = s1.G_style(resolution=8, label_size=3, **TINY_G)
    names = _names(_shapes(G, jnp.zeros([1, 8]), jnp.zeros([1, 3]))[1])
    assert {k: v.shape for k, v in names.items() if "8x8/Conv0_up" in k or "G_mapping" in k} == {
        "G_synthesis/8x8/Conv0_up/weight": (3, 3, 8, 8),  # HWIO, as TF
        "G_synthesis/8x8/Conv0_up/bias": (8,),
        "G_synthesis/8x8/Conv0_up/Noise/weight": (8,),
        "G_synthesis/8x8/Conv0_up/StyleMod/weight": (8, 16),  # [in, out]
        "G_synthesis/8x8/Conv0_up/StyleMod/bias": (16,),
        "G_mapping/Dense0/weight": (16, 8),  # latents + label embedding
        "G_mapping/Dense0/bias": (8,),
        "G_mapping/Dense1/weight": (8, 8),
        "G_mapping/Dense1/bias": (8,),
        "G_mapping/LabelConcat/weight": (3, 8),
    }
    D = s1.D_basic(resolution=8, label_size=3, **TINY)
    d_names = _names(_shapes(D, jnp.zeros([2, 8, 8, 1]), jnp.zeros([2, 3]))[1])
    assert d_names["4x4/Conv/weight"].shape == (3, 3, 9, 8)  # + 1 minibatch-stddev channel
    assert d_names["4x4/Dense0/weight"].shape == (8 * 16, 8)  # NCHW-flattened conv features
    assert d_names["4x4/Dense1/weight"].shape == (8, 3)
    assert d_names["8x8/Conv1_down/weight"].shape == (3, 3, 8, 8)


def test_conversion_round_trip_and_collections():
    tf_vars = {"lod": np.float32(1.5), "dlatent_avg": np.arange(3, dtype=np.float32),
               "G_synthesis/noise0": np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4),
               "G_synthesis/4x4/Const/const": np.arange(32, dtype=np.float32).reshape(1, 2, 4,
                                                                                       4),
               "G_synthesis/4x4/Conv/weight": np.ones([3, 3, 2, 2], np.float32)}
    variables = tf_stylegan1.to_flax(tf_vars)
    assert set(variables["buffers"]) == {"lod", "dlatent_avg", "G_synthesis"}
    const = variables["params"]["G_synthesis"]["4x4"]["Const"]["const"]
    np.testing.assert_array_equal(const[0, 1, 2], tf_vars["G_synthesis/4x4/Const/const"][0, :, 1,
                                                                                           2])
    assert variables["buffers"]["G_synthesis"]["noise0"].shape == (1, 4, 4, 1)
    back = tf_stylegan1.from_flax(variables)
    assert list(back) == sorted(tf_vars)
    for name, value in tf_vars.items():
        np.testing.assert_array_equal(back[name], value)
    with pytest.raises(ValueError, match="does not belong"):
        tf_stylegan1.from_flax({"params": {"lod": np.zeros(())}})


def test_registry_builds_official_names_and_rejects_bad_kwargs():
    G = build_generator("training.networks_stylegan.G_style",
                        {"resolution": 16, "blur_filter": [1, 2, 1], "is_template_graph": True})
    assert isinstance(G, s1.G_style) and G.blur_filter == (1.0, 2.0, 1.0)
    assert hash(G) == hash(build_generator("training.networks_stylegan.G_style",
                                           {"resolution": 16, "blur_filter": [1, 2, 1]}))
    D = build_discriminator("training.networks_stylegan.D_basic", {"resolution": 16})
    assert isinstance(D, s1.D_basic)
    with pytest.raises(InvalidArgument, match="unexpected arguments"):
        build_generator("training.networks_stylegan.G_style", {"resolution": 16, "bogus": 1})
    with pytest.raises(InvalidArgument, match="power of two"):
        build_discriminator("training.networks_stylegan.D_basic", {"resolution": 24})
    with pytest.raises(InvalidArgument, match="mapping_layers"):
        build_generator("training.networks_stylegan.G_style", {"mapping_layers": 0})


def test_fused_scale_rule():
    assert not s1.use_fused_scale("auto", 64) and s1.use_fused_scale("auto", 128)
    assert s1.use_fused_scale(True, 8) and not s1.use_fused_scale(False, 1024)
    with pytest.raises(ValueError):
        s1.use_fused_scale("yes", 8)


# ----------------------------------------------------------------------------- truncation, mixing


@pytest.fixture(scope="module")
def gen():
    """G_style 16x16 ('auto' = linear structure, 6 layers), its variables with a random
    dlatent_avg, latents, and its jitted mapping."""
    G = s1.G_style(resolution=16, **TINY_G)
    z = jax.random.normal(jax.random.key(2), [3, 8])
    g_vars = _init(G, z)
    avg = jax.random.normal(jax.random.key(3), [8])
    g_vars = _with(g_vars, "buffers", "dlatent_avg", avg)
    mapping = jax.jit(lambda v, z, psi, cutoff: G.apply(v, z, None, psi, cutoff, method=G.map))
    return G, g_vars, z, mapping


@pytest.fixture(scope="module")
def synth(gen):
    G = gen[0]
    return jax.jit(lambda v, ws, lod: G.apply(v, ws, noise_mode="const", lod=lod,
                                              method=G.synthesize))


def test_truncation_psi_one_is_identity_and_psi_zero_gives_average(gen):
    G, g_vars, z, mapping = gen
    ws = mapping(g_vars, z, 1.0, 0)  # cutoff 0: nothing truncated
    assert ws.shape == (3, G.num_ws, 8)
    _close(mapping(g_vars, z, 1.0, 4), ws, 1e-6)
    ws0 = mapping(g_vars, z, 0.0, 4)
    _close(ws0[:, :4], np.broadcast_to(g_vars["buffers"]["dlatent_avg"], (3, 4, 8)), 1e-6)
    np.testing.assert_array_equal(ws0[:, 4:], ws[:, 4:])
    # psi 1 given as a number skips truncation (bit-exact); as the official call: psi 1 or
    # cutoff <= 0 disable truncation, and the defaults are 0.7 / 8.
    np.testing.assert_array_equal(G.apply(g_vars, z, truncation_psi=1.0, method=G.map),
                                  G.apply(g_vars, z, method=G.map))
    assert (G.truncation_psi, G.truncation_cutoff) == (0.7, 8)
    assert not s1._truncates(1.0, 8) and not s1._truncates(0.7, 0)
    assert not s1._truncates(None, 8) and s1._truncates(0.7, 8)


def test_style_mixing_takes_layers_from_the_crossover_on(gen, synth):
    G, g_vars, z, mapping = gen
    z2 = jax.random.normal(jax.random.key(4), z.shape)
    ws1, ws2 = mapping(g_vars, z, 1.0, 0), mapping(g_vars, z2, 1.0, 0)
    mixed = s1.style_mix(ws1, ws2, 2)
    np.testing.assert_array_equal(mixed[:, :2], ws1[:, :2])
    np.testing.assert_array_equal(mixed[:, 2:], ws2[:, 2:])

    train = jax.jit(lambda v, cutoff: G.apply(v, z, is_training=True, noise_mode="const",
                                              latents2=z2, mixing_cutoff=cutoff,
                                              mutable=["buffers"]))
    img, updated = train(g_vars, 2)
    _close(img, synth(g_vars, mixed, 0.0))
    # Training mode also moves dlatent_avg: lerp(batch mean, avg, 0.995).
    want = s1.lerp(ws1[:, 0].mean(0), g_vars["buffers"]["dlatent_avg"], 0.995)
    _close(updated["buffers"]["dlatent_avg"], want, 1e-6)
    # Crossover at num_ws: no mixing.
    _close(train(g_vars, G.num_ws)[0], synth(g_vars, ws1, 0.0))


def test_mixing_cutoff_draws():
    keys = jax.random.split(jax.random.key(5), 200)
    draw = jax.jit(jax.vmap(s1.mixing_cutoff, in_axes=(0, None, None, None)),
                   static_argnums=1)
    always = np.asarray(draw(keys, 10, 0.0, 1.0))
    assert always.min() == 1 and always.max() == 9  # uniform in [1, 10)
    assert set(np.asarray(draw(keys, 10, 1.5, 1.0))) <= set(range(1, 8))  # 10 - 2·int(1.5)
    assert set(np.asarray(draw(keys, 10, 0.0, 0.0))) == {10}  # never mixes
    mixed = np.mean(np.asarray(draw(keys, 10, 0.0, 0.9)) < 10)
    assert 0.8 < mixed < 0.98


# ----------------------------------------------------------------------------- lod fade-in


def _subset(variables, drop: tuple[str, ...], rename: tuple[str, str] | None = None) -> dict:
    """Variables without the official names starting with `drop`, one name prefix renamed."""
    out = {}
    for name, value in tf_stylegan1.from_flax(variables).items():
        if name.startswith(drop):
            continue
        if rename and name.startswith(rename[0]):
            name = rename[1] + name[len(rename[0]):]
        out[name] = value
    return jax.tree.map(jnp.asarray, tf_stylegan1.to_flax(out))


def test_synthesis_lod_fade_in_matches_fixed_networks(gen, synth):
    G, g_vars, z, mapping = gen
    ws = mapping(g_vars, z, 1.0, 0)
    variables = {c: tree["G_synthesis"] for c, tree in g_vars.items()}
    kwargs = dict(dlatent_size=8, num_channels=3, structure="fixed", **TINY)
    run_fixed = jax.jit(lambda module, v, ws: module.apply(v, ws, noise_mode="const"),
                        static_argnums=0)
    # lod 0: the fixed network (which has ToRGB_lod0 only).
    want16 = run_fixed(s1.G_synthesis(resolution=16, **kwargs),
                       _subset(variables, ("ToRGB_lod1", "ToRGB_lod2")), ws)
    _close(synth(g_vars, ws, 0.0), want16, 1e-6)
    # lod 1: the 8x8 fixed network (ToRGB_lod1 as its lod 0), nearest-upscaled.
    sub8 = _subset(variables, ("16x16/", "noise4", "noise5", "ToRGB_lod0", "ToRGB_lod2"),
                   ("ToRGB_lod1", "ToRGB_lod0"))
    want8 = s1.upscale2d(run_fixed(s1.G_synthesis(resolution=8, **kwargs), sub8, ws[:, :4]))
    _close(synth(g_vars, ws, 1.0), want8)
    # Half way through the transition: the mean of the two.
    _close(synth(g_vars, ws, 0.5), (want16 + want8) / 2)


@pytest.fixture(scope="module")
def disc():
    D = s1.D_basic(resolution=16, num_channels=3, **TINY)  # 'auto' = linear
    images = jax.random.normal(jax.random.key(7), [4, 16, 16, 3])
    return D, _init(D, images), images


def test_discriminator_lod_fade_in_matches_fixed_networks(disc):
    D, variables, images = disc
    run = jax.jit(lambda v, lod: D.apply(v, images, None, lod))
    run_fixed = jax.jit(lambda module, v, x: module.apply(v, x), static_argnums=0)
    fixed = dict(num_channels=3, structure="fixed", **TINY)
    want16 = run_fixed(s1.D_basic(resolution=16, **fixed),
                       _subset(variables, ("FromRGB_lod1", "FromRGB_lod2")), images)
    _close(run(variables, 0.0), want16, 1e-6)
    sub8 = _subset(variables, ("16x16/", "FromRGB_lod0", "FromRGB_lod2"),
                   ("FromRGB_lod1", "FromRGB_lod0"))
    want8 = run_fixed(s1.D_basic(resolution=8, **fixed), sub8, s1.downscale2d(images))
    _close(run(variables, 1.0), want8)
    # Without a lod argument, the `lod` buffer.
    _close(run(_with(variables, "buffers", "lod", 1.0), None), want8)


# ----------------------------------------------------------------------------- noise, jit


def _noisy(variables):
    """Every noise strength set to 0.5 (they are initialised to zero)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.5 if "Noise" in jax.tree_util.keystr(path) else x, variables)


def _key(seed: int) -> jax.Array:
    """An 'rbg' key: its normal draws compile far faster than threefry's."""
    return jax.random.key(seed, impl="rbg")


def test_zero_noise_strengths_remove_the_noise(gen, synth):
    G, g_vars, z, mapping = gen
    ws = mapping(g_vars, z, 1.0, 0)
    run = jax.jit(lambda v, key: G.apply(v, ws, noise_mode="random", method=G.synthesize,
                                         rngs={"noise": key}))
    a = run(g_vars, _key(8))
    np.testing.assert_array_equal(a, run(g_vars, _key(9)))  # strengths are zero
    _close(synth(g_vars, ws, 0.0), a, 1e-6)  # the stored noise, times zero
    noisy = _noisy(g_vars)
    assert float(jnp.max(jnp.abs(run(noisy, _key(8)) - a))) > 1e-3


def test_noise_layers_subset(gen, synth):
    G, g_vars, z, mapping = gen
    ws = mapping(g_vars, z, 1.0, 0)
    noisy = _noisy(g_vars)
    only_last = jax.jit(lambda v: G.apply(v, ws, noise_mode="const", noise_layers=(5,),
                                          method=G.synthesize))(noisy)
    # = every strength but layer 5's (16x16/Conv1) zeroed.
    last = jax.tree_util.tree_map_with_path(
        lambda path, x: x if "16x16']['Conv1']['Noise" in jax.tree_util.keystr(path) else (
            x * 0 if "Noise" in jax.tree_util.keystr(path) else x), noisy)
    _close(only_last, synth(last, ws, 0.0), 1e-6)
    assert float(jnp.max(jnp.abs(only_last - synth(noisy, ws, 0.0)))) > 1e-3


def test_generator_and_discriminator_compile_once(gen, disc):
    G, g_vars, z, _ = gen
    D, d_vars, _ = disc
    traces = []

    @jax.jit
    def step(g_vars, d_vars, z, lod, psi):
        traces.append(1)
        img = G.apply(g_vars, z, lod=lod, truncation_psi=psi, randomize_noise=False)
        return D.apply(d_vars, img, None, lod)

    for i, (lod, psi) in enumerate([(0.0, 0.7), (1.5, 1.0), (0.25, 0.5)]):
        scores = step(g_vars, d_vars, z + i, lod, psi)
        assert scores.shape == (3, 1) and bool(jnp.all(jnp.isfinite(scores)))
    assert len(traces) == 1
