"""experiments.train_attributes: CelebA attribute tables, the data-parallel step, the CLI."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from data_pipelines import attributes as attr_data
from flaxgan.metrics import attributes
from flaxgan.train.sharding import make_mesh
from tests.conftest import REPO_ROOT, TEST_DATA

CELEBA = TEST_DATA / 'celeba_small'
TINY = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=8)


def test_folder_records_follow_the_attribute_table(tmp_path):
    src = attr_data.FolderAttributes(CELEBA, None, 8)
    assert len(src) == 512 and src.missing == 0
    row = (CELEBA / 'list_attr_celeba.txt').read_text().splitlines()[2].split()
    assert row[0] == '001001.jpg' and src.files[0].name == '001001.jpg'
    record = src[0]
    assert record['image'].shape == (8, 8, 3) and record['image'].dtype == np.uint8
    np.testing.assert_array_equal(record['attributes'], [v == '1' for v in row[1:]])

    # Rows whose image is absent are skipped and counted.
    lines = (CELEBA / 'list_attr_celeba.txt').read_text().splitlines()
    for name in ('001001.jpg', '001002.jpg'):
        shutil.copy(CELEBA / name, tmp_path / name)
    (tmp_path / 'list_attr_celeba.txt').write_text('\n'.join(['3', *lines[1:5]]) + '\n')
    src = attr_data.FolderAttributes(tmp_path, None, 8)
    assert len(src) == 2 and src.missing == 1


def test_holdout_split():
    train, held = attr_data.open_data(str(CELEBA), 8, holdout=0.25, max_images=40)
    assert (len(train), len(held)) == (30, 10)
    np.testing.assert_array_equal(held[0]['attributes'], train.source[30]['attributes'])
    with pytest.raises(FileNotFoundError, match='list_attr_celeba.txt'):
        attr_data.open_data(str(REPO_ROOT / 'tests' / 'data' / 'augment'), 8)


def test_tfds_celeba_faces_records(tmp_path):
    """A `celeba_faces` dataset (the `raw` recipe: no detector, fast to build) as input."""
    from data_pipelines import build  # TFDS builders only for this test

    manual = tmp_path / 'manual'
    (manual / 'img_align_celeba').mkdir(parents=True)
    lines = (CELEBA / 'list_attr_celeba.txt').read_text().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:12]}
    for name in rows:
        shutil.copy(CELEBA / name, manual / 'img_align_celeba' / name)
    (manual / 'list_attr_celeba.txt').write_text('\n'.join(['10', *lines[1:12]]) + '\n')
    build.build('celeba_faces', manual, 'raw', tmp_path / 'tfds')
    train, held = attr_data.open_data('celeba_faces/raw', 8, data_dir=str(tmp_path / 'tfds'),
                               holdout=0.2)
    assert (len(train), len(held)) == (8, 2)
    for i in range(len(train)):
        record = train[i]
        name = train.source.source[i]['file_name']
        name = name.decode() if isinstance(name, bytes) else name
        assert record['image'].shape == (8, 8, 3)
        np.testing.assert_array_equal(record['attributes'], [v == '1' for v in rows[name]])


def test_sharded_step_is_the_global_batch_gradient():
    """Plain SGD (no Adam to hide a scale error): all devices == one device."""
    params = attributes.init_params(TINY, jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 8, 8, 3)).astype(np.uint8)
    labels = (rng.random((8, 40)) > 0.5).astype(np.float32)
    sgd = optax.sgd(0.1)
    out = []
    for devices in (jax.local_devices()[:1], jax.local_devices()):
        mesh = make_mesh(devices)
        step = attributes.make_train_step(TINY, sgd, mesh, xflip=False, seed=0)
        p = jax.tree.map(np.array, params)
        new, _, loss, _ = step(p, sgd.init(p), images, labels, np.int32(0))
        out.append((jax.tree.map(np.asarray, new), float(loss)))
    # Loss and gradients reduced in another order over 1 vs 8 devices: ~1e-6 relative; a
    # per-device (unreduced) loss or an N-times gradient is off by 10% or more.
    assert out[0][1] == pytest.approx(out[1][1], rel=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 out[0][0], out[1][0])
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), out[0][0], params)
    assert max(jax.tree.leaves(moved)) > 0


def _run(*args):
    return subprocess.run([sys.executable, '-m', 'experiments.train_attributes', *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_cli_trains_evaluates_and_saves(tmp_path):
    out = tmp_path / 'clf'
    result = _run(f'--data={CELEBA}', f'--outdir={out}', '--max_images=40', '--holdout=0.2',
                  '--resolution=8', '--channel_base=64', '--channel_max=8', '--batch_size=8',
                  '--epochs=1', '--log_every=2')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Male' in result.stdout and 'majority baseline' in result.stdout
    record = json.loads((out / 'accuracy.json').read_text())
    assert record['num_train'] == 32 and record['num_heldout'] == 8 and record['steps'] == 4
    assert set(record['per_attribute']) == set(attributes.ATTRIBUTES)
    for r in record['per_attribute'].values():
        assert 0 <= r['accuracy'] <= 1 and 0 <= r['majority_baseline'] <= 1
    clf = attributes.load_classifier(out)
    assert clf.config == attributes.ClassifierConfig(resolution=8, channel_base=64,
                                                     channel_max=8)
    assert clf.metadata['num_train'] == 32
    assert clf(np.zeros((2, 16, 16, 3), np.uint8)).shape == (2, 40)


def test_cli_reports_bad_data_in_one_line(tmp_path):
    shutil.copy(CELEBA / '001001.jpg', tmp_path / '001001.jpg')
    result = _run(f'--data={tmp_path}', f'--outdir={tmp_path / "out"}')
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error:') and 'list_attr_celeba.txt' in last
