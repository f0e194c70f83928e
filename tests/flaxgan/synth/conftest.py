"""Shared fixtures of the flaxgan.synth tests: one tiny random generator (16², 6 ws) and a fake
face detector, so that the trained models are never what a test needs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.detection.face import Face
from flaxgan import sample
from flaxgan.models import build_generator
from tests.flaxgan.test_sample import TINY

# A plausible upright face in a 64² frame: eyes, nose, mouth corners (x, y).
FACE_MARKS = np.array([[20, 26], [44, 26], [32, 36], [24, 46], [40, 46]], np.float32)


@pytest.fixture(scope="session")
def tiny_g():
    """test_sample's tiny generator, initialised under jit (eager init costs ~8 s), with
    random w_avg and noise strengths as there."""
    module = build_generator(TINY["class_name"], TINY)
    variables = jax.jit(lambda k: module.init({"params": k}, jnp.zeros([1, module.z_dim]),
                                              jnp.zeros([1, 0]), noise_mode="const"))(
        jax.random.key(0))
    rng = np.random.RandomState(0)
    variables = jax.tree_util.tree_map_with_path(
        lambda p, x: (x + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
                      if any(getattr(k, "key", "") in ("w_avg", "noise_strength") for k in p)
                      else x), variables)
    return sample.LoadedGenerator(module, sample.replicate(variables), dict(TINY), "tiny")


def fake_detector(min_mean: float = 0.0):
    """`detect_batch` stand-in: one sane face in every image brighter than `min_mean`."""
    def detect(images):
        return [[Face((8.0, 8.0, 56.0, 56.0), 0.99, FACE_MARKS * im.shape[0] / 64)]
                if im.mean() > min_mean else [] for im in images]
    return detect
