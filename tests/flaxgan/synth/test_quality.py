"""flaxgan.synth.quality: realism score, landmark sanity, D scores, and the filters on known-bad
images (blank, noise, a non-face) next to a real face, with the real MTCNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import crop
from data_pipelines.detection import mtcnn
from flaxgan import images, sample
from flaxgan.models import build_discriminator
from flaxgan.synth import export, quality
from tests.conftest import TEST_DATA
from tests.flaxgan.synth.conftest import FACE_MARKS

FACE = TEST_DATA / "celeba_small" / "001001.jpg"
BRICK = TEST_DATA / "data_pipelines" / "misc" / "nonface_brick.jpg"
CELEBA_BOX = (25 / 89 / 2, 57 / 109 / 2, 153 / 89 / 2, 185 / 109 / 2)  # celeba32's face box


def test_realism_score_is_the_papers_definition():
    rng = np.random.RandomState(0)
    real, gen = rng.randn(60, 5).astype(np.float32), rng.randn(9, 5).astype(np.float32)
    d_real = np.linalg.norm(real[:, None] - real[None], axis=-1)
    radii = np.sort(d_real, axis=1)[:, 3]  # 3rd nearest other point (column 0 is itself)
    pruned = np.where(radii > np.median(radii), 0, radii)
    np.testing.assert_allclose(quality.realism_radii(real), pruned, rtol=1e-5)
    want = np.max(pruned[None] / np.linalg.norm(gen[:, None] - real[None], axis=-1), axis=1)
    np.testing.assert_allclose(quality.realism_scores(gen, real), want, rtol=1e-4)
    # On a kept real point: inside its ball (R >= 1); far away: about 0.
    kept = int(np.flatnonzero(pruned > 0)[0])
    near, far = real[kept] + 1e-3, np.full(5, 100.0, np.float32)
    r = quality.realism_scores(np.stack([near, far]), real)
    assert r[0] > 1 and r[1] < 0.05


def test_landmark_sanity():
    ok = FACE_MARKS.copy()
    bad = [ok[[1, 0, 2, 3, 4]],                       # eyes swapped
           ok - [0, 30] * (np.arange(5) == 2)[:, None],  # nose above the eyes
           ok * 0.05 + 30,                            # inter-ocular distance 2% of the side
           ok + [40, 0],                              # outside the image
           ok + [[0, 0], [0, 0], [20, 0], [0, 0], [0, 0]]]  # nose far to the side (yaw)
    got = quality.landmark_sanity(np.stack([ok, *bad, np.full((5, 2), np.nan)]), 64)
    assert got.tolist() == [True] + [False] * 6


def test_decide_counts_and_drops_exactly_the_failing_images():
    t = quality.Thresholds(min_std=2, min_face_score=0.9, min_d_score=0.0, min_realism=1.0)
    nan = np.nan
    scores = {"std": np.array([0.5, 50, 50, 50, 50, 50, 50, 0.1]),
              "face_score": np.array([0.99, nan, 0.5, 0.99, 0.99, 0.99, 0.99, nan]),
              "landmarks_ok": np.array([1, nan, 1, 0, 1, 1, 1, nan]),
              "d_score": np.array([1, 1, 1, 1, -2, 1, 1, 1]),
              "realism": np.array([2, 2, 2, 2, 2, 0.5, 2, 2])}
    codes = quality.decide(scores, t)
    assert quality.names_of(codes) == ["flat", "no_face", "low_face_score", "bad_landmarks",
                                       "low_d_score", "low_realism", "kept", "flat"]
    counts = quality.count_reasons(codes)
    assert counts["flat"] == 2 and counts["kept"] == 1 and sum(counts.values()) == 8
    # Scores not computed never drop; no detector ran: faces are not required.
    loose = quality.decide({"std": scores["std"]}, t)
    assert quality.names_of(loose) == ["flat"] + ["kept"] * 6 + ["flat"]


def test_filters_drop_blank_noise_and_non_face_keep_a_real_face():
    face = crop.resize_image(images.read_image(FACE)[28:92, 12:76], 32)  # the face, 32²
    brick = crop.resize_image(images.read_image(BRICK), 32)
    rng = np.random.RandomState(0)
    batch = np.stack([np.full((32, 32, 3), 128, np.uint8),               # blank
                      rng.randint(0, 256, (32, 32, 3)).astype(np.uint8),  # noise
                      brick, face])
    scores = export.score_images(batch, export.Scorers(detector=mtcnn.MTCNN().detect_batch))
    names = quality.names_of(quality.decide(scores, quality.Thresholds()))
    assert names == ["flat", "no_face", "no_face", "kept"], (names, scores)
    assert scores["face_score"][3] > 0.9 and scores["landmarks_ok"][3] == 1


@pytest.fixture(scope="module")
def tiny_d_export(tmp_path_factory):
    kwargs = {"class_name": "training.networks.Discriminator", "c_dim": 0, "img_resolution": 16,
              "img_channels": 3, "channel_base": 256, "channel_max": 16}
    module = build_discriminator(kwargs["class_name"], kwargs)
    shapes = jax.eval_shape(module.init, jax.random.key(1), jnp.zeros([1, 16, 16, 3]),
                            jnp.zeros([1, 0]))
    rng = np.random.RandomState(1)  # random weights without compiling init
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    folder = tmp_path_factory.mktemp("d")
    sample.export_variables(folder, "D", kwargs, variables)
    return folder, module, variables


def test_d_scores_of_a_loaded_discriminator(tiny_d_export):
    folder, module, variables = tiny_d_export
    disc = quality.load_discriminator(folder)
    assert disc.group_size == 4
    x = np.random.RandomState(0).randint(0, 256, (6, 16, 16, 3)).astype(np.uint8)
    got = quality.d_scores(disc, x)
    # Groups of 4 as in training; the last group padded with repeats of the last image.
    padded = np.concatenate([x, x[-1:], x[-1:]]).astype(np.float32) / 127.5 - 1
    want = np.asarray(jax.jit(module.apply)(variables, padded, jnp.zeros([8, 0])))[:6, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(quality.d_scores(disc, x), got)  # deterministic


def test_load_discriminator_of_a_generator_only_export(tmp_path):
    (tmp_path / "network.json").write_text('{"G_ema": {"class_name": "x"}}')
    assert quality.load_discriminator(tmp_path) is None
