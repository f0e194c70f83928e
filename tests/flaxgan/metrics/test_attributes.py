"""The CelebA attribute classifier: names, input scaling, batch independence, files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.builders.celeba_faces import celeba_faces
from flaxgan.metrics import attributes
from tests.conftest import TEST_DATA

CONFIG = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=8)


@pytest.fixture(scope='module')
def params():
    return attributes.init_params(CONFIG, jax.random.key(0))


def test_attribute_names_match_celeba_and_the_dataset():
    assert attributes.ATTRIBUTES == tuple(celeba_faces._DEFAULT_ATTRIBUTES)
    header = (TEST_DATA / 'celeba_small' / 'list_attr_celeba.txt').read_text().splitlines()[1]
    assert tuple(header.split()) == attributes.ATTRIBUTES and len(attributes.ATTRIBUTES) == 40


def test_config_validation():
    for bad in (dict(resolution=12), dict(resolution=4), dict(architecture='vgg'),
                dict(num_attributes=0)):
        with pytest.raises(ValueError):
            attributes.ClassifierConfig(**bad)
    with pytest.raises(ValueError, match='unknown'):
        attributes.ClassifierConfig.from_dict({'resolution': 8, 'depth': 3})


def test_discriminator_blocks_and_forty_outputs(params):
    assert set(params) == {'b8', 'b4'}
    assert set(params['b8']) == {'fromrgb', 'conv0', 'conv1', 'skip'}  # resnet D block
    assert set(params['b4']) == {'conv', 'fc', 'out'}
    assert params['b4']['out']['weight'].shape[-1] == 40


def test_input_scaling_box_filter_and_resize():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    x = attributes.to_classifier_input(jnp.asarray(small), 8)
    np.testing.assert_allclose(x, small / 127.5 - 1, atol=1e-6)  # float32 rounding of [-1, 1]
    big = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)  # 32x32, factor 4: box filter
    np.testing.assert_allclose(attributes.to_classifier_input(jnp.asarray(big), 8), x,
                               atol=1e-6)
    odd = rng.integers(0, 256, (2, 20, 12, 3)).astype(np.uint8)
    assert attributes.to_classifier_input(jnp.asarray(odd), 8).shape == (2, 8, 8, 3)


def test_classify_probabilities_do_not_depend_on_the_batch(params):
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    probs = np.asarray(attributes.classify(params, images, CONFIG))
    assert probs.shape == (5, 40) and np.all((probs > 0) & (probs < 1))
    one = np.asarray(attributes.classify(params, images[2:3], CONFIG))
    # A few float32 conv layers vectorised for another batch size or program: ~1e-6; a
    # batch-coupled layer (a minibatch statistic) would move probabilities by O(0.1).
    np.testing.assert_allclose(one[0], probs[2], rtol=1e-4, atol=1e-5)
    clf = attributes.AttributeClassifier(CONFIG, params)
    np.testing.assert_allclose(jax.jit(lambda x: clf(x))(images), probs, rtol=1e-4,
                               atol=1e-5)


def test_save_load_round_trip(params, tmp_path):
    attributes.save_classifier(tmp_path / 'clf', CONFIG, params, metadata={'note': 'x'})
    images = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    for path in (tmp_path / 'clf', tmp_path / 'clf' / 'classifier.json',
                 tmp_path / 'clf' / 'classifier.npz'):
        clf = attributes.load_classifier(path)
        assert clf.config == CONFIG and clf.attributes == attributes.ATTRIBUTES
        assert clf.metadata == {'note': 'x'}
        # The same ops on bit-identical weights and inputs: equal by construction.
        np.testing.assert_array_equal(clf(images), attributes.classify(params, images, CONFIG))


def _one_line(excinfo, name):
    msg = str(excinfo.value)
    assert '\n' not in msg and name in msg, msg


def test_load_errors_name_the_file(params, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        attributes.load_classifier(tmp_path / 'nothing')
    _one_line(e, 'classifier.json')
    d = tmp_path / 'clf'
    attributes.save_classifier(d, CONFIG, params)
    good_json = (d / 'classifier.json').read_text()

    (d / 'classifier.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError) as e:
        attributes.load_classifier(d)
    _one_line(e, 'classifier.npz')

    attributes.save_classifier(d, CONFIG, params)
    info = json.loads(good_json)
    info['config']['resolution'] = 16  # weights of an 8x8 net under a 16x16 config
    (d / 'classifier.json').write_text(json.dumps(info))
    with pytest.raises(ValueError) as e:
        attributes.load_classifier(d)
    _one_line(e, 'classifier.npz')

    info['config']['resolution'] = 8
    info['config']['channel_max'] = 16  # same modules, other shapes
    (d / 'classifier.json').write_text(json.dumps(info))
    with pytest.raises(ValueError, match='shape') as e:
        attributes.load_classifier(d)
    _one_line(e, 'classifier.npz')

    (d / 'classifier.json').write_text('{"format": "something else"}')
    with pytest.raises(ValueError) as e:
        attributes.load_classifier(d)
    _one_line(e, 'classifier.json')
    (d / 'classifier.json').unlink()
    with pytest.raises(FileNotFoundError) as e:
        attributes.load_classifier(d / 'classifier.npz')
    _one_line(e, 'classifier.json')
