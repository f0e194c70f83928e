"""experiments.synth_dataset: one process runs mix, export and evaluate on a tiny network, and
the bad inputs that must each end in one `error:` line (run_cases: JAX starts once)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from flaxgan import sample
from flaxgan.metrics import attributes
from flaxgan.models import build_generator
from tests.conftest import xla_flags
from tests.experiments.run_cases import assert_one_line, run_in_subprocess
from tests.flaxgan.test_sample import TINY


def _random(shapes, seed):
    rng = np.random.RandomState(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    module = build_generator(TINY["class_name"], TINY)  # random variables: nothing to compile
    shapes = jax.eval_shape(lambda: module.init({"params": jax.random.key(0)},
                                                jnp.zeros([1, 16]), jnp.zeros([1, 0])))
    network = sample.export_variables(root / "tiny", "G_ema", TINY, _random(shapes, 0))
    config = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=16)
    params = jax.eval_shape(lambda: attributes.AttributeNet(config).init(
        jax.random.key(0), jnp.zeros([1, 8, 8, 3]))["params"])
    classifier = attributes.save_classifier(root / "clf", config, _random(params, 1))
    (root / "labels.txt").write_text("seed male glasses\n0 1 -1\n1 -1 1\n2 1 1\n")
    (root / "bad.txt").write_text("seed male glasses\n0 1 -1\n1 -1 maybe\n")
    out = root / "out"
    base = ["mix", f"--network={network}", "--dests=10-13", f"--outdir={out / 'mix'}",
            "--noprogress"]
    mix = [*base, "--sources=0-2", f"--labels={root / 'labels.txt'}"]
    ok = [mix,
          ["export", f"--network={network}", "--num=6", "--norequire_face", "--chunk_size=4",
           f"--png_dir={out / 'png'}", f"--outdir={out / 'export'}", "--noprogress"],
          ["evaluate", f"--classifier={classifier}", "--nono_face", "--names=tiny",
           f"--data={out / 'mix/tfds/synthetic_faces/mix/1.0.0'}", f"--out={out / 'e.json'}",
           f"--table={out / 'e.md'}", "--noprogress"]]
    bad = {  # argv -> what the error line names
        (*mix[:-1], f"--labels={root / 'missing.txt'}"): "missing.txt: labels file not readable",
        (*mix[:-1], f"--labels={root / 'bad.txt'}"): "bad.txt:3: value 'maybe'",
        (*mix, "--sources=0-5"): "no labels for seed",
        (*mix, "--sources=5-1"): "--sources: bad range '5-1'",
        (*mix, f"--network={root / 'nope'}"): "nope",
        (*mix, "--trunc=0.5"): "holds a job with other settings (truncation_psi",
        (*mix, "--layers=middle", "--overwrite", "--trunc=nan"): "--trunc=nan",
        ("export", f"--network={network}", "--num=2", "--class=1",
         f"--outdir={out / 'x'}"): "unconditional",
        ("export", f"--network={network}", "--num=2", "--balance=Male=0.5",
         f"--outdir={out / 'x'}"): "needs the attribute classifier",
        ("evaluate", f"--classifier={classifier}", f"--data={root / 'nowhere'}"): "nowhere",
        ("bogus",): "expected one command",
    }
    got = run_in_subprocess("experiments.synth_dataset", [*ok, *bad],
                            env={"XLA_FLAGS": xla_flags(8)})
    return out, got[:len(ok)], list(zip(bad.values(), got[len(ok):], strict=True))


def test_mix_export_evaluate_from_the_command_line(results):
    out, ok, _ = results
    for r in ok:
        assert r["code"] == 0, r
    mix = list(tfds.builder_from_directory(
        str(out / "mix/tfds/synthetic_faces/mix/1.0.0")).as_data_source("train"))
    assert len(mix) == 12 and (out / "mix" / "grid.png").is_file()
    labels = {0: (True, False), 1: (False, True), 2: (True, True)}  # the file's, per source
    for r in mix:
        assert (r["attributes"]["Male"], r["attributes"]["Eyeglasses"]) == labels[
            int(r["source_seed"])]
    exported = list(tfds.builder_from_directory(
        str(out / "export/tfds/synthetic_faces/export/1.0.0")).as_data_source("train"))
    assert len(exported) == 6 and len(list((out / "png").glob("seed*.png"))) == 6
    report = json.loads((out / "e.json").read_text())["datasets"][0]
    assert report["name"] == "tiny" and report["num_images"] == 12
    assert set(report["attributes"]) == {"Male", "Eyeglasses"} and report["no_face"] is None
    assert "| Male accuracy (%) |" in (out / "e.md").read_text()


def test_bad_input_is_one_line(results):
    for expected, result in results[2]:
        assert_one_line(result, expected)
