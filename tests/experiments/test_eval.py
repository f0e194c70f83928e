"""experiments.eval end to end: --workdir, TFDS --data, --mirror, generator sampling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from absl import flags

from experiments import eval as eval_main
from flaxgan import sample
from flaxgan.metrics import evaluation, registry
from flaxgan.train.sharding import make_mesh
from tests.conftest import TEST_DATA

PKL = TEST_DATA / "reference" / "sg2_uncond32.pkl"
NUM = 12


def _fid_small(ctx):
    value, counts = registry.compute_fid(ctx, max_real=NUM, num_gen=NUM)
    return {"fid_small": value}, counts


if not registry.is_valid_metric("fid_small"):
    registry.register_metric("fid_small")(_fid_small)


@pytest.fixture(scope="module")
def tfds_faces(tmp_path_factory):
    """An `image_mix/resize_64` TFDS dataset of real CelebA faces (one source)."""
    from data_pipelines import build

    manual = tmp_path_factory.mktemp("manual")
    (manual / "celeba").mkdir()
    for path in sorted((TEST_DATA / "celeba_small").glob("*.jpg"))[:NUM]:
        shutil.copy(path, manual / "celeba")
    data_dir = tmp_path_factory.mktemp("tfds")
    build.build("image_mix", manual, "resize_64", data_dir)
    return "image_mix/resize_64", str(data_dir)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tfds_faces):
    """A training run as the loop leaves it: config.json + an exported snapshot."""
    root = tmp_path_factory.mktemp("run")
    sample.export(sample.load(PKL), root / "snapshots" / "network-snapshot-000004")
    (root / "snapshots" / "network-snapshot-000002.tmp").mkdir()  # an interrupted export
    name, data_dir = tfds_faces
    (root / "config.json").write_text(json.dumps({"data": {"name": name, "data_dir": data_dir}}))
    return root


def _main(argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["eval", *argv])
    eval_main.main([])


def test_tfds_source_reads_the_prepared_faces_and_mirrors(tfds_faces):
    name, data_dir = tfds_faces
    plain = evaluation.real_source(name, data_dir)
    assert plain.num_images == NUM and plain.resolution == (64, 64)
    images = np.concatenate(list(plain.batches(5)))
    assert images.shape == (NUM, 64, 64, 3) and images.dtype == np.uint8
    mirrored = evaluation.real_source(name, data_dir, mirror=True)
    both = np.concatenate(list(mirrored.batches(5)))
    assert mirrored.num_images == 2 * NUM and mirrored.xflip
    np.testing.assert_array_equal(both[NUM:], images[:, :, ::-1])


def test_workdir_evaluates_the_latest_snapshot_against_its_dataset(workdir, capsys):
    _main([f"--workdir={workdir}", "--metrics=fid_small", "--no_cache"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["metric"] == "fid_small" and line["value"] > 0
    assert line["num_images"] == {"real": NUM, "fake": NUM}
    assert line["fake"].endswith("network-snapshot-000004")
    assert line["real"] == "image_mix/resize_64"
    saved = (workdir / "metrics-eval.jsonl").read_text().splitlines()
    assert json.loads(saved[-1]) == line


def test_workdir_without_snapshots_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main([f"--workdir={tmp_path}", "--metrics=fid_small"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no snapshots/network-snapshot" in last


def _with_noise_strength(variables, value: float):
    import jax

    return jax.tree_util.tree_map_with_path(
        lambda path, x: np.full_like(x, value) if "noise_strength" in jax.tree_util.keystr(path)
        else x, variables)


def test_generator_source_is_the_same_on_one_and_all_devices():
    import jax

    g = sample.load(PKL)
    # Latents come from the batch key; the noise is drawn per device: compare without noise.
    variables = _with_noise_strength(g.variables, 0.0)
    one = evaluation.network_source(g.module, variables, g.c_dim, seed=3,
                                    mesh=make_mesh(jax.local_devices()[:1]))
    many = evaluation.network_source(g.module, variables, g.c_dim, seed=3)
    a, b = next(one.batches(8)), next(many.batches(8))
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    assert np.max(np.abs(a.astype(int) - b.astype(int))) <= 1
    batches = one.batches(8)
    assert not np.array_equal(next(batches), next(batches))


def test_latent_generator_shares_noise_within_a_batch():
    import jax
    import jax.numpy as jnp

    g = sample.load(PKL)
    variables = _with_noise_strength(g.variables, 1.0)
    latent = evaluation.latent_generator(g.module, variables)
    synthesis = jax.jit(latent.synthesis)  # as the metrics call it (not op by op)
    ws = jax.jit(latent.mapping)(jnp.ones((1, g.z_dim)), jnp.zeros((1, 0)))
    pair = np.asarray(synthesis(jnp.concatenate([ws, ws]), jax.random.key(0)))
    # Same w, same noise: the rows agree up to float32 rounding (two batch rows can take
    # different vectorised paths, ~1e-6 seen); per-row noise of strength 1 differs by O(1).
    np.testing.assert_allclose(pair[0], pair[1], atol=1e-4)
    other = np.asarray(synthesis(ws, jax.random.key(1)))
    # The noise comes from the key: another key moves the image far beyond rounding.
    assert np.abs(pair[0] - other[0]).max() > 0.1
