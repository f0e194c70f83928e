"""flaxgan.edit: planted directions are recovered, conditioning, edits, files, labellers."""

import types

import numpy as np
import pytest

from flaxgan import edit, sample
from flaxgan.errors import InvalidArgument
from flaxgan.metrics import attributes
from tests.conftest import TEST_DATA

PKL = TEST_DATA / "reference" / "sg2_uncond32.pkl"  # official StyleGAN2, 32², 8 ws of 128
FACE = TEST_DATA / "celeba_small" / "001001.jpg"


def _unit(v):
    return v / np.linalg.norm(v)


def _direction(normal, attribute="a", space="w", scale=1.0, offset=0.0, mean=None):
    normal = _unit(np.asarray(normal, np.float64)).astype(np.float32)
    mean = np.zeros_like(normal) if mean is None else np.asarray(mean, np.float32)
    return edit.Direction(normal=normal, offset=offset, scale=scale, mean=mean,
                          attribute=attribute, space=space)


@pytest.mark.parametrize("space", ["w", "z"])
def test_planted_linear_attribute_is_recovered(space):
    rng = np.random.RandomState(0)
    n, dim = 20_000, 128
    w = (rng.randn(n, dim) + rng.randn(dim)).astype(np.float32)  # an off-centre cloud
    z = rng.randn(n, 64).astype(np.float32)
    u = _unit(rng.randn(w.shape[1] if space == "w" else z.shape[1]))
    latents = w if space == "w" else z
    # The fake labeller: a noisy linear score with a bias, some images without a score.
    scores = (latents - latents.mean(0)) @ u + 0.5 + 0.3 * rng.randn(n)
    scores[rng.rand(n) < 0.05] = np.nan
    samples = edit.Samples(z=z, w=w, scores={"planted": scores.astype(np.float32)},
                           sources={"planted": "fake"}, network="abc", seed=0,
                           truncation_psi=1.0)
    d = edit.direction_from_samples(samples, "planted", space)
    assert d.space == space and d.dim == len(u) and d.num_samples == n
    assert abs(np.linalg.norm(d.normal) - 1) < 1e-6
    assert float(d.normal @ u) >= 0.95
    assert d.accuracy >= 0.95 and d.metadata["score_correlation"] > 0.9
    assert d.metadata["num_scored"] == np.isfinite(scores).sum()
    assert d.metadata["num_kept_per_side"] == int(0.02 * np.isfinite(scores).sum())
    np.testing.assert_allclose(d.scale, np.std(latents @ d.normal), rtol=1e-4)
    # The boundary sits between the kept ends: the signed distance orders the scores.
    ok = np.isfinite(scores)
    assert np.corrcoef(edit.distance(latents[ok], d), scores[ok])[0, 1] > 0.9


def test_fit_boundary_refuses_too_few_or_constant_scores():
    x = np.random.RandomState(0).randn(100, 4)
    with pytest.raises(InvalidArgument, match="too few"):
        edit.fit_boundary(x, np.arange(100.0), keep=0.01)
    with pytest.raises(InvalidArgument, match="overlap"):
        edit.fit_boundary(x, np.ones(100), keep=0.1)
    with pytest.raises(InvalidArgument, match="too few"):
        edit.fit_boundary(x, np.full(100, np.nan), keep=0.1)


def test_condition_makes_directions_orthogonal():
    rng = np.random.RandomState(1)
    a, b, c = (_direction(rng.randn(32), name, mean=rng.randn(32), offset=0.3)
               for name in "abc")
    ab = edit.condition(a, b)
    assert abs(float(ab.normal @ b.normal)) < 1e-6
    assert abs(np.linalg.norm(ab.normal) - 1) < 1e-6
    assert float(ab.normal @ a.normal) > 0 and ab.metadata["conditioned_on"] == ["b"]
    abc = edit.condition(a, b, c)
    assert max(abs(float(abc.normal @ o.normal)) for o in (b, c)) < 1e-6
    np.testing.assert_allclose(abc.metadata["cosine_to_unconditioned"],
                               abc.normal @ a.normal, atol=1e-6)
    # The new boundary passes through the old one's point nearest the sample mean.
    foot = a.mean - edit.distance(a.mean, a) * a.normal
    assert abs(edit.distance(foot, ab)) < 1e-4 and abs(edit.distance(foot, a)) < 1e-4
    assert edit.condition(a) is a
    with pytest.raises(InvalidArgument, match="span"):
        edit.condition(a, a)
    with pytest.raises(InvalidArgument, match="cannot condition"):
        edit.condition(a, _direction(rng.randn(32), space="z"))


FAKE_G = types.SimpleNamespace(num_ws=8, img_resolution=32,  # StyleGAN2 32²: 4,8,8,16,16,32,32,32
                               kwargs={"class_name": "training.networks.Generator"},
                               is_stylegan1=False)


def test_strength_zero_is_the_identity_and_only_chosen_layers_move():
    rng = np.random.RandomState(2)
    ws = rng.randn(3, 8, 16).astype(np.float32)
    d = _direction(rng.randn(16), scale=0.7)
    out = edit.apply(ws, d, [0.0, 1.5, -3.0])
    assert out.shape == (3, 3, 8, 16) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], ws)  # exactly
    np.testing.assert_allclose(out[2] - ws, np.broadcast_to(-3 * 0.7 * d.normal, ws.shape),
                               atol=1e-5)
    coarse = edit.apply(ws, d, [0.0, 2.0], layers="coarse", g=FAKE_G)
    np.testing.assert_array_equal(coarse[0], ws)
    moved = np.abs(coarse[1] - ws).max(axis=(0, 2)) > 0
    assert moved.tolist() == [True, True, True] + [False] * 5  # ws 0-2 drive 4² and 8²
    fine = edit.apply(ws, d, [1.0], layers=[6, 7])
    assert (np.abs(fine[0] - ws).max(axis=(0, 2)) > 0).tolist() == [False] * 6 + [True] * 2
    raw = edit.apply(ws, np.ones(16), [2.0])  # a raw step vector is used as given
    np.testing.assert_allclose(raw[0] - ws, 2.0, atol=1e-6)

    z = rng.randn(4, 16).astype(np.float32)
    zd = _direction(rng.randn(16), space="z", scale=1.0)
    zs = edit.apply_z(z, zd, [0, 1])
    np.testing.assert_array_equal(zs[0], z)
    np.testing.assert_allclose(zs[1] - z, np.broadcast_to(zd.normal, z.shape), atol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda ws, d: edit.apply(ws[0], d, [1]), "ws must be"),
    (lambda ws, d: edit.apply(ws, d, []), "strengths"),
    (lambda ws, d: edit.apply(ws, d, [np.inf]), "strengths"),
    (lambda ws, d: edit.apply(ws, d, [1], layers="coarse"), "needs the generator"),
    (lambda ws, d: edit.apply(ws, d, [1], layers=[8]), r"\[0, 8\)"),
    (lambda ws, d: edit.apply(ws, d, [1], layers="top", g=FAKE_G), "layers must be"),
    (lambda ws, d: edit.apply(ws, np.ones(5), [1]), "5-dimensional"),
    (lambda ws, d: edit.apply(ws, d.replace(space="z"), [1]), "Z direction"),
])
def test_bad_edits_are_one_line(call, match):
    ws = np.zeros([2, 8, 16], np.float32)
    with pytest.raises(InvalidArgument, match=match) as e:
        call(ws, _direction(np.ones(16)))
    assert "\n" not in str(e.value)


def test_sweep_grid_and_video_strengths():
    images = np.zeros([3, 2, 4, 4, 3], np.uint8)  # [S, N, H, W, C]
    images[:, 1] = 255  # second latent white
    images[2] = 100  # third strength grey
    grid = np.asarray(edit.sweep_grid(images))
    assert grid.shape == (8, 12, 3)  # 2 rows (latents) x 3 columns (strengths)
    assert grid[5, 1, 0] == 255 and grid[1, 9, 0] == 100 and grid[1, 1, 0] == 0
    s = edit.video_strengths([-3, 0, 3], 8)
    np.testing.assert_allclose(s, [-3, -1.5, 0, 1.5, 3, 1.5, 0, -1.5])


def test_files_round_trip_and_bad_files_are_one_line(tmp_path):
    d = _direction(np.arange(1.0, 9.0), "Smiling", scale=0.8, offset=-0.25,
                   mean=np.linspace(-1, 1, 8)).replace(
        network="f" * 64, num_samples=10_000, accuracy=0.97,
        metadata={"keep": 0.02, "conditioned_on": ["Male"], "score_correlation": float("nan")})
    path = tmp_path / "smile.npz"
    assert edit.save_direction(path, d) == str(path) and sorted(p.name for p in tmp_path.iterdir()
                                                                ) == ["smile.npz"]
    back = edit.load_direction(path)
    np.testing.assert_array_equal(back.normal, d.normal)
    np.testing.assert_array_equal(back.mean, d.mean)
    for field in ("offset", "scale", "attribute", "space", "network", "num_samples", "accuracy"):
        assert getattr(back, field) == getattr(d, field), field
    assert back.metadata["conditioned_on"] == ["Male"] and np.isnan(
        back.metadata["score_correlation"])

    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    other = tmp_path / "other.npz"
    np.savez(other, w=np.zeros(3))
    with np.load(path) as f:
        fields = {k: f[k] for k in f.files}
    scaled = tmp_path / "scaled.npz"
    np.savez(scaled, **{**fields, "normal": 2 * fields["normal"]})
    cases = {tmp_path / "missing.npz": "missing.npz: no such file",
             text: "not a readable .npz", other: "missing 'format'",
             scaled: "finite unit vector"}
    for bad, expected in cases.items():
        with pytest.raises(InvalidArgument) as e:
            edit.load_direction(bad)
        assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_attribute_names():
    assert [edit.resolve_attribute(a) for a in ("smile", "young", "AGE", "male", "eyeglasses",
                                                 "pose", "blond_hair")] == [
        "Smiling", "Young", "Young", "Male", "Eyeglasses", "yaw", "Blond_Hair"]
    with pytest.raises(InvalidArgument, match="unknown attribute 'smiel'"):
        edit.resolve_attribute("smiel")
    with pytest.raises(InvalidArgument, match="train_attributes"):
        edit.make_labellers(["smile", "yaw"])


def test_yaw_from_landmarks_is_signed_and_invariant():
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float64)
    assert abs(edit.yaw_from_landmarks(frontal)) < 1e-12
    turned = frontal + [[0, 0], [0, 0], [8, 0], [0, 0], [0, 0]]
    assert edit.yaw_from_landmarks(turned) == pytest.approx(0.2)
    mirrored = turned * [-1, 1]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # "left" is the smaller x again
    assert edit.yaw_from_landmarks(mirrored) == pytest.approx(-0.2)
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * turned @ rot.T + [13, -7]
    assert edit.yaw_from_landmarks(np.stack([turned, moved])) == pytest.approx([0.2, 0.2])


def test_yaw_labeller_on_a_real_face_and_its_mirror():
    from data_pipelines import crop, filters

    face = crop.resize_image(filters.read_image(FACE)[28:92, 12:77], 32)  # the celeba32 box
    blank = np.full_like(face, 128)
    yaw = edit.yaw_labeller().fn(np.stack([face, face[:, ::-1], blank]))
    assert yaw.shape == (3, 1) and np.isnan(yaw[2, 0])
    assert np.all(np.isfinite(yaw[:2])) and 0.1 < abs(yaw[0, 0]) < 0.5  # a turned head
    # A mirror image negates the yaw (up to MTCNN's landmark noise at this size).
    assert yaw[0, 0] * yaw[1, 0] < 0 and abs(yaw[0, 0] + yaw[1, 0]) < 0.2 * abs(yaw[0, 0])


def test_classifier_labeller_gives_the_classifier_logits(tmp_path):
    import jax

    config = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=16)
    params = attributes.init_params(config, jax.random.key(0))
    attributes.save_classifier(tmp_path / "clf", config, params)
    lab = edit.classifier_labeller(tmp_path / "clf", ["smile", "Male"], batch_size=4)
    assert lab.names == ("Smiling", "Male")
    images = np.random.RandomState(0).randint(0, 256, [6, 16, 16, 3]).astype(np.uint8)
    logits = lab.fn(images)
    assert logits.shape == (6, 2)
    probs = np.asarray(attributes.classify(params, images, config))
    cols = [attributes.ATTRIBUTES.index(n) for n in lab.names]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probs[:, cols], atol=1e-5)
    with pytest.raises(InvalidArgument, match="classifier.json"):
        edit.classifier_labeller(tmp_path / "nowhere", ["smile"])


def test_fit_direction_end_to_end_moves_the_attribute():
    """A tiny generator, an image-level fake attribute (brightness): the fitted direction
    makes every sampled face brighter as the strength grows."""
    g = sample.load(PKL)
    brightness = edit.Labeller(("bright",), lambda im: im.mean(axis=(1, 2, 3))[:, None] - 128.0,
                               "mean pixel")
    d = edit.fit_direction(g, "bright", labellers=[brightness], num=200, keep=0.1,
                           batch_size=50, progress=False)
    assert d.attribute == "bright" and d.network == edit.network_fingerprint(g)
    assert d.num_samples == 200 and d.metadata["num_kept_per_side"] == 20
    ws = sample.mapping(g, sample.seeds_to_z(g, [1000, 1001, 1002]))
    images = edit.render(g, edit.apply(ws, d, [-2.0, 0.0, 2.0]))
    assert images.shape == (3, 3, 32, 32, 3)
    # Strength 0 renders the same ws, in another batch layout: float32 rounding only (XLA CPU
    # vectorises batch rows differently), so a tolerance, not bit equality.
    np.testing.assert_allclose(images[1], sample.synthesize(g, ws), atol=1e-5, rtol=0)
    mean = images.mean(axis=(2, 3, 4))  # [S, N]
    assert np.all(np.diff(mean, axis=0) > 0), mean
