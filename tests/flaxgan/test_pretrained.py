"""Bundled models (flaxgan/pretrained): found by name offline, float16 storage ~ float32."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import pretrained, sample
from tests.conftest import TEST_DATA

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


CLASSIFIER_MODELS = [m for m in MODELS if m.attribute_classifier is not None]


def _celeba_attributes(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """list_attr_celeba.txt -> (attribute names, {file stem: [40] bool})."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    rows = {ln.split()[0].rsplit(".", 1)[0]: np.array([int(v) > 0 for v in ln.split()[1:]])
            for ln in lines[2:] if ln.strip()}
    return names, rows


def test_celeba32_carries_its_attribute_classifier():
    model = pretrained.find("celeba32")
    assert model.attribute_classifier == model.path / pretrained.ATTRIBUTES_DIR
    assert pretrained.matched_classifier("celeba32") == model.attribute_classifier
    assert pretrained.matched_classifier("no-such-model") is None


@pytest.mark.parametrize("model", CLASSIFIER_MODELS, ids=[m.name for m in CLASSIFIER_MODELS])
def test_bundled_classifier_reads_real_faces_cut_as_its_model_was_trained(model):
    """The float16-stored classifier, restored to float32, on the vendored CelebA faces cut with
    the model's face box: well above the majority baseline on clear attributes. The bound, 40%
    of the way from the baseline to perfect, sits below what it measured (Male .90, Smiling .79 on
    these 512 faces; held-out figures in its accuracy.json) and far above
    what broken weights or a wrong crop give (the baseline)."""
    from data_pipelines import input as data_input
    from flaxgan.metrics import attributes
    from flaxgan.project import CELEBA_FACE_BOX

    clf = attributes.load_classifier(model.attribute_classifier)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(clf.params))
    faces = TEST_DATA / "celeba_small"
    source, _ = data_input.open_source(faces, "train", resolution=clf.config.resolution,
                                       crop_box=CELEBA_FACE_BOX)
    images = np.stack([source[i]["image"] for i in range(len(source))])
    names, table = _celeba_attributes(faces / "list_attr_celeba.txt")
    truth = np.stack([table[f.stem] for f in source.files])
    x = attributes.to_classifier_input(images, clf.config.resolution)
    logits = jax.jit(attributes.logits_fn, static_argnames="config")  # one program
    predicted = np.asarray(logits(clf.params, x, config=clf.config)) > 0
    for name in ("Male", "Smiling"):
        column = names.index(name)
        accuracy = np.mean(predicted[:, clf.attributes.index(name)] == truth[:, column])
        baseline = max(truth[:, column].mean(), 1 - truth[:, column].mean())
        assert accuracy >= baseline + 0.4 * (1 - baseline), (name, accuracy, baseline)
