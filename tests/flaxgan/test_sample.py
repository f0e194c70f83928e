import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flaxgan import sample
from flaxgan.models import build_generator

TINY = {
    "class_name": "training.networks.Generator", "z_dim": 16, "c_dim": 0, "w_dim": 16,
    "img_resolution": 16, "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 256, "channel_max": 16},
}


def _tiny(**overrides) -> sample.LoadedGenerator:
    kwargs = {**TINY, **overrides}
    module = build_generator(kwargs["class_name"], kwargs)
    variables = jax.jit(lambda: module.init(  # one program, not one per op
        {"params": jax.random.key(0)}, jnp.zeros([1, module.z_dim]),
        jnp.zeros([1, module.c_dim]), noise_mode="const"))()
    # Random w_avg and noise strengths so that truncation and noise studies are non-trivial.
    variables = jax.tree_util.tree_map_with_path(
        lambda p, x: (x + 0.3 * jax.random.normal(jax.random.key(len(p)), x.shape)
                      if any(getattr(k, "key", "") in ("w_avg", "noise_strength") for k in p)
                      else x), variables)
    return sample.LoadedGenerator(module, variables, kwargs, source="tiny")


@pytest.fixture(scope="module")
def g():
    return _tiny()


def test_seeds_to_z_is_the_official_convention(g):
    z = sample.seeds_to_z(g, [0, 5])
    assert z.dtype == np.float32 and z.shape == (2, 16)
    np.testing.assert_array_equal(z[1], np.random.RandomState(5).randn(16).astype(np.float32))


def test_mapping_truncation_and_cutoff(g):
    z = sample.seeds_to_z(g, range(3))
    ws = sample.mapping(g, z)
    assert ws.shape == (3, g.num_ws, g.w_dim)
    np.testing.assert_allclose(sample.mapping(g, z, truncation_psi=0.0),
                               np.broadcast_to(g.w_avg, ws.shape), atol=1e-6)
    cut = sample.mapping(g, z, truncation_psi=0.5, truncation_cutoff=2)
    # Another compiled mapping for each psi: float32 rounding ~1e-7 of ws ~O(1); truncating
    # the wrong layers moves them by 0.5 |w - w_avg| ~ 0.1.
    np.testing.assert_allclose(cut[:, :2], g.w_avg + 0.5 * (ws[:, :2] - g.w_avg), atol=1e-5)
    np.testing.assert_allclose(cut[:, 2:], ws[:, 2:], atol=1e-5)
    with pytest.raises(ValueError, match="z must be"):
        sample.mapping(g, np.zeros([2, 3]))


def test_batching_does_not_change_results(g):
    ws = sample.mapping(g, sample.seeds_to_z(g, range(5)))
    a = sample.synthesize(g, ws, batch_size=2)
    b = sample.synthesize(g, ws, batch_size=16)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (5, 16, 16, 3) and a.dtype == np.float32


def _differ(a, b) -> bool:
    """Far beyond float rounding (~1e-6), which alone would make `not np.allclose` true."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) > 1e-2


def test_noise_modes_and_layers(g):
    ws = sample.mapping(g, sample.seeds_to_z(g, [1, 2]))
    const = sample.synthesize(g, ws, noise_mode="const")
    none = sample.synthesize(g, ws, noise_mode="none")
    assert _differ(const, none)
    # Zeroed strengths vs skipped noise: other programs, float32 rounding through the network
    # ~1e-6; the noise itself (strengths ~0.3) moves pixels by >1e-2.
    np.testing.assert_allclose(sample.synthesize(g, ws, noise_layers="none"), none, atol=1e-5)
    np.testing.assert_allclose(sample.synthesize(g, ws, noise_layers="all"), const, atol=1e-5)
    coarse = sample.synthesize(g, ws, noise_layers="coarse")
    assert _differ(coarse, const) and _differ(coarse, none)
    r1 = sample.synthesize(g, ws, noise_mode="random", seed=1)
    # The same program on the same inputs and seed: deterministic on one machine.
    np.testing.assert_array_equal(r1, sample.synthesize(g, ws, noise_mode="random", seed=1))
    assert _differ(r1, sample.synthesize(g, ws, noise_mode="random", seed=2))


def test_layer_groups_follow_resolutions(g):
    # 16x16: ws 0 -> 4², 1-2 -> 8², 3-5 -> 16² (5 = last toRGB).
    assert sample.layer_indices(g, "coarse") == (0, 1, 2)
    assert sample.layer_indices(g, "middle") == (3, 4, 5)
    assert sample.layer_indices(g, "fine") == ()
    assert sample.layer_indices(g, [4, 1]) == (1, 4)
    with pytest.raises(ValueError, match="layer indices"):
        sample.layer_indices(g, [99])


def test_generate_images_and_grid(g):
    images = sample.generate(g, [0, 1, 2], truncation_psi=0.7)
    assert len(images) == 3 and all(im.size == (16, 16) and im.mode == "RGB" for im in images)
    canvas = sample.grid(images, cols=2)
    assert canvas.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(canvas)[16:, :16], np.asarray(images[2]))


def test_to_uint8_matches_official_formula():
    x = np.array([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(sample.to_uint8(x), [0, 0, 128, 255, 255, 255])
    assert sample.to_pil(np.zeros([1, 4, 4, 1], np.float32))[0].mode == "L"


def test_style_mix_tiles_are_mixed_latents(g):
    grid_image, tiles = sample.style_mix(g, row_seeds=[1, 2], col_seeds=[3, 4, 5],
                                         layers="coarse")
    assert grid_image.size == (4 * 16, 3 * 16)
    ws = dict(zip([1, 2, 3, 4, 5], sample.mapping(g, sample.seeds_to_z(g, [1, 2, 3, 4, 5])),
                  strict=True))
    mixed = ws[2].copy()
    mixed[[0, 1, 2]] = ws[4][[0, 1, 2]]
    want = sample.to_pil(sample.synthesize(g, mixed[None]))[0]
    # uint8 of a tile synthesised in another batch: float rounding can cross one level;
    # mixing the wrong layers or seeds changes the picture by tens of levels.
    diff = np.abs(np.asarray(tiles[(2, 4)], int) - np.asarray(want, int))
    assert diff.max() <= 1, diff.max()


def test_interpolate_endpoints_and_blend(g):
    frames = sample.interpolate(g, 3, 7, steps=4, space="z")
    ends = sample.generate(g, [3, 7])
    assert len(frames) == 4
    for got, want in ((frames[0], ends[0]), (frames[-1], ends[1])):
        assert np.abs(np.asarray(got, int) - np.asarray(want, int)).max() <= 1
    w_frames = sample.interpolate(g, 3, 7, steps=3, space="w")
    assert np.abs(np.asarray(w_frames[0], int) - np.asarray(ends[0], int)).max() <= 1
    with pytest.raises(ValueError, match="space"):
        sample.interpolate(g, 3, 7, steps=3, space="x")

    # w of seeds mapped in a batch of 2 vs alone: float32 rounding ~1e-7 relative; a wrong
    # weighting moves w by O(|w3 - w7|) ~ 1.
    w, image = sample.blend(g, [3, 7], [2.0, 0.0])
    np.testing.assert_allclose(w, sample.mapping(g, sample.seeds_to_z(g, [3]))[0], rtol=1e-5,
                               atol=1e-5)
    assert isinstance(image, Image.Image)
    w_half, _ = sample.blend(g, [3, 7], [1.0, 1.0])
    ws = sample.mapping(g, sample.seeds_to_z(g, [3, 7]))
    np.testing.assert_allclose(w_half, ws.mean(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one weight per seed"):
        sample.blend(g, [3, 7], [1.0])


def test_slerp_keeps_norm_between_unit_vectors():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    path = sample.slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(path[2], [np.sqrt(0.5)] * 2, atol=1e-6)


def test_conditional_labels():
    g = _tiny(c_dim=3)
    with pytest.raises(ValueError, match="conditional"):
        sample.generate(g, [0])
    one = sample.generate(g, [0], c=1)[0]
    onehot = sample.to_pil(sample.synthesize(
        g, sample.mapping(g, sample.seeds_to_z(g, [0]), np.eye(3)[[1]])))[0]
    # uint8 through another program: at most one level of rounding; another class is far.
    assert np.abs(np.asarray(one, int) - np.asarray(onehot, int)).max() <= 1
    with pytest.raises(ValueError, match="class index"):
        sample.labels(g, 3, 1)
    with pytest.raises(ValueError, match="unconditional"):
        sample.labels(_tiny(), 0, 1)


def test_export_and_load_round_trip(g, tmp_path):
    sample.export(g, tmp_path / "net")
    loaded = sample.load(tmp_path / "net")
    ws = sample.mapping(g, sample.seeds_to_z(g, [0, 1]), truncation_psi=0.5)
    # Bit-exact weights through the same program on the same machine: identical outputs.
    np.testing.assert_array_equal(ws, sample.mapping(loaded, sample.seeds_to_z(g, [0, 1]),
                                                     truncation_psi=0.5))
    np.testing.assert_array_equal(sample.synthesize(g, ws), sample.synthesize(loaded, ws))


def test_input_transform_is_the_inverse_of_make_transform(g):
    from flaxgan.models.stylegan3 import make_transform

    m = sample.input_transform((0.1, -0.05), 10.0)
    np.testing.assert_allclose(m @ make_transform((0.1, -0.05), 10.0), np.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match="StyleGAN3"):
        sample.synthesize(g, sample.mapping(g, sample.seeds_to_z(g, [0])), transform=m)
