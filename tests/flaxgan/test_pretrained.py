"""Bundled models (flaxgan/pretrained): found by name offline, float16 storage ~ float32."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import pretrained, sample

MODELS = sample.pretrained()


def test_celeba32_is_bundled_and_described():
    assert "celeba32" in [m.name for m in MODELS]
    model = pretrained.find("celeba32")
    assert model.resolution == 32 and model.kimg > 0 and "CelebA" in model.dataset
    assert "non-commercial" in model.licence.lower()
    assert pretrained.find("../celeba32") is None and pretrained.find("") is None


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_loads_by_name_and_matches_its_float32_network(model):
    g = sample.load(model.name)
    assert g.img_resolution == model.resolution
    leaves = jax.tree.leaves(g.variables["params"])
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)  # restored to float32
    reference = np.load(model.path / pretrained.REFERENCE_NPZ)
    images = sample.synthesize(g, sample.mapping(g, sample.seeds_to_z(g, reference["seeds"])))
    assert images.shape == (len(reference["seeds"]), model.resolution, model.resolution, 3)
    assert np.all(np.isfinite(images))
    # float16 parameters (relative rounding <= 2**-11) through every layer move the images by
    # what the bundling measured; 2x that, at least 1/255 (one uint8 level), bounds other CPUs.
    tolerance = max(2 * model.float16_max_abs_error, 2 / 255)
    np.testing.assert_allclose(images, reference["images"], atol=tolerance, rtol=0)
    assert model.float16_max_abs_error < 0.05  # the stored copy is the network, not a cousin


def test_bundled_networks_resume_training():
    """G_ema and D are there (fine-tuning starts G from G_ema), in the official names that
    `resume_pkl` reads."""
    for model in MODELS:
        networks = json.loads((model.path / sample.NETWORK_JSON).read_text())
        assert set(networks) == {"G_ema", "D"}
        for key in networks:
            kwargs, parameters, buffers = sample.read_export(str(model.path), key)
            assert kwargs["class_name"] and parameters
            assert all(v.dtype == np.float32 for v in parameters.values()
                       if np.issubdtype(v.dtype, np.floating))
