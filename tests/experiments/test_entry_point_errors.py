"""Every entry point answers bad input in one line (issue 14, item 5): `error: ...` on stderr,
exit status 2, nothing written. `generate` and `train` run in one process each
(tests/experiments/run_cases.py: their absl flags clash with eval's), all cases batched."""

from __future__ import annotations

import json

import pytest

from flaxgan import convert, sample
from tests.conftest import TEST_DATA, xla_flags
from tests.experiments.run_cases import assert_one_line, run_in_subprocess
from tools import make_hostile_corpus as corpus

PKL = TEST_DATA / "reference" / "sg2_uncond32.pkl"
SG3 = TEST_DATA / "reference" / "sg3t_32.pkl"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    case = next(c for c in corpus.CASES if c.name == "laughs_lists")
    return corpus.write(case, tmp_path_factory.mktemp("hostile"))


def _run_cases(module: str, cases: list[list[str]]) -> list[dict]:
    return run_in_subprocess(module, cases,
                             env={"XLA_FLAGS": xla_flags(8)})


def _export_with(tmp_path, name: str, text: str):
    directory = tmp_path / name
    sample.export(sample.load(PKL), directory)
    (directory / "network.json").write_text(text)
    return directory


def test_generate_refuses_bad_flags_before_writing(tmp_path, hostile):
    out = tmp_path / "out"
    base = [f"--network={PKL}", f"--outdir={out}"]
    cases = {  # argv -> what the line must name
        ("--seeds=0-99999999999",): "at most 100000",
        ("--seeds=4294967296",): "2**32",
        ("--trunc=nan",): "--trunc=nan",
        ("--trunc=5",): "--trunc=5",
        ("--trunc_cutoff=-2",): "--trunc_cutoff=-2",
        ("--trunc_cutoff=99",): "has 8 ws",
        ("--grid=-2",): "--grid=-2",
        ("--seeds=0", "--bogus=1"): "bogus",
        # The official dashed names are aliases of ours.
        ("--trunc-cutoff=-2",): "--trunc_cutoff=-2",
        ("--noise-mode=bogus",): "--noise_mode=bogus",
        ("--projected-w=w.npz",): "'projected-w'",
    }
    argv = [[*base, *extra] for extra in cases]
    argv += [[f"--network={SG3}", f"--outdir={out}", "--translate=a,b"],
             [f"--network={SG3}", f"--outdir={out}", "--rotate=inf"],
             [f"--network={PKL}", f"--outdir={hostile}/x"],
             [f"--network={hostile}", f"--outdir={out}"]]
    expected = [*cases.values(), "--translate", "--rotate", "not a writable folder",
                str(hostile)]
    for result, text in zip(_run_cases("experiments.generate", argv), expected, strict=True):
        assert_one_line(result, text)
    assert not out.exists()


def test_train_refuses_bad_configs_and_workdirs(tmp_path, hostile):
    config = tmp_path / "cfg.py"
    config.write_text(f"""
from experiments.configs import smoke
def get_config(arg=None):
    c = smoke.get_config()
    c.train.total_kimg = 0.016
    if arg == 'key': c.train.bach_size = 8
    if arg == 'section': c.trian = dict(batch_size=8)
    if arg and arg.startswith('batch'): c.train.batch_size = int(arg[5:].replace('m', '-'))
    if arg == 'hostile': c.resume_pkl = {str(hostile)!r}
    if arg == 'tfds':
        c.data.name, c.data.data_dir = 'celeba_faces/mtcnn_256', {str(tmp_path / "no_tfds")!r}
        c.data.prepare = 'python -m data_pipelines.build celeba_faces --config=mtcnn_256'
    return c
""")
    cases = {"key": "bach_size", "section": "'trian'", "batch0": "batch_size=0",
             "batchm4": "batch_size=-4", "batch12": "multiple of the 8 devices",
             "hostile": str(hostile),
             "tfds": f"not prepared in {tmp_path / 'no_tfds'}); prepare it with: python -m "
                     "data_pipelines.build celeba_faces --config=mtcnn_256, or point to its "
                     "TFDS data dir with --config.data.data_dir=DIR"}
    argv = [[f"--config={config}:{variant}", f"--workdir={tmp_path / variant}"]
            for variant in cases]
    typo = ["--config=smoke.py", f"--workdir={tmp_path / 'typo'}"]
    argv += [[f"--config={config}", f"--workdir={hostile}/run"],
             [*typo, "--config.train.bach_size=8"], [*typo, "--config.trian.batch_size=8"],
             [*typo, "--config.train.batch_size.x=1"], [*typo, "--config.train.zzzq=1"]]
    expected = [*cases.values(), "cannot create it",
                "--config.train.bach_size: no key 'bach_size' in config.train; did you mean "
                "--config.train.batch_size?", "did you mean --config.train?",
                "config.train.batch_size is a value (int), not a section",
                "valid keys: adam, allow_batch_size_change, batch_size,"]
    for result, text in zip(_run_cases("experiments.train", argv), expected, strict=True):
        assert_one_line(result, text)
    # Config errors are found before the run starts (resume_pkl is read inside the loop).
    assert not any((tmp_path / variant / "checkpoints").exists() for variant in cases
                   if variant != "hostile")
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("text, expected", [
    ('{"G_ema": {', "not readable as JSON"),
    ("[1, 2]", "expected an object of networks"),
    ('{"G_ema": "abc"}', "string 'class_name'"),
    ('{"G_ema": {"z_dim": 4}}', "string 'class_name'"),
])
def test_load_names_a_bad_network_json(tmp_path, text, expected):
    directory = _export_with(tmp_path, "export", text)
    with pytest.raises(convert.SnapshotError, match=expected) as error:
        sample.load(directory)
    assert str(directory / "network.json") in str(error.value)


@pytest.mark.parametrize("key, value, expected", [
    ("z_dim", "abc", "z_dim='abc'"),
    ("z_dim", -3, "z_dim=-3"),
    ("img_resolution", 1 << 20, "img_resolution=1048576"),
    ("img_resolution", 48, "power of two"),
    ("mapping_kwargs", {"num_layers": 10**9}, "mapping_kwargs.num_layers"),
])
def test_load_validates_constructor_kwargs(tmp_path, key, value, expected):
    directory = _export_with(tmp_path, "export", "{}")
    sample.export(sample.load(PKL), tmp_path / "good")
    meta = json.loads((tmp_path / "good" / "network.json").read_text())
    meta["G_ema"][key] = value
    (directory / "network.json").write_text(json.dumps(meta))
    with pytest.raises(convert.SnapshotError, match=expected) as error:
        sample.load(directory)
    assert str(directory) in str(error.value)
