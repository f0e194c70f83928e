"""Everyday friction of the command lines (issue 14, item 7): the official dashed flag names as
aliases, config-override typos naming the closest key, and the data-preparation entry points
answering bad input in one line with exit status 2 like the others."""

from __future__ import annotations

import os
import subprocess
import sys

import ml_collections
import pytest

from experiments import cli
from experiments import eval as eval_main  # noqa: F401 (defines the flags the aliases map to)
from tests.conftest import REPO_ROOT


def test_official_dashed_names_are_rewritten_only_for_defined_flags():
    argv = ["eval", "--real-dir=A", "-fake-dir", "B", "--no-mirror", "--num-gen=5",
            "--metrics=fid", "--projected-w=x", "--data=a-b", "--", "--real-dir=kept"]
    assert cli.official_aliases(argv) == [
        "eval", "--real_dir=A", "-fake_dir", "B", "--nomirror", "--num_gen=5",
        "--metrics=fid", "--projected-w=x", "--data=a-b", "--", "--real-dir=kept"]


def test_config_override_typos_name_the_closest_key():
    config = ml_collections.ConfigDict({"train": {"batch_size": 8, "total_kimg": 1.0},
                                        "seed": 0})
    assert cli._missing_key(config, ["train", "batch_size"], "config") is None
    assert cli._missing_key(config, ["train", "bach_size"], "config") == (
        "--config.train.bach_size: no key 'bach_size' in config.train; did you mean "
        "--config.train.batch_size?")
    assert cli._missing_key(config, ["zzz"], "config") == (
        "--config.zzz: no key 'zzz' in config; valid keys: seed, train")
    assert "config.seed is a value (int)" in cli._missing_key(config, ["seed", "x"], "config")


def _run(module: str, *argv: str, **env: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}, timeout=300)
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("argv, expected", [
    ((), "expected one dataset NAME (one of celeba_faces, casia_webface, ffhq, image_mix)"),
    (("celeba_faces",), "--manual_dir=DIR is required"),
    (("bogus", "--manual-dir=/nonexistent"), "unknown dataset 'bogus'"),
    (("celeba_faces", "--manual_dir=/", "--config=nope"), "unknown config 'nope'"),
])
def test_build_answers_bad_input_in_one_line(argv, expected):
    code, err = _run("data_pipelines.build", *argv)
    assert code == 2 and err[-1].startswith(f"error: {expected}"), err[-3:]
    assert not any("Traceback" in line or line.startswith("USAGE") for line in err)


def test_train_attributes_answers_a_dataset_not_prepared_in_one_line(tmp_path):
    code, err = _run("experiments.train_attributes", "--data=celeba_faces/mtcnn_256",
                     f"--data-dir={tmp_path / 'tfds'}", f"--outdir={tmp_path / 'out'}")
    assert code == 2 and "Traceback" not in "\n".join(err), err[-3:]
    assert err[-1].startswith(f"error: dataset 'celeba_faces/mtcnn_256' is not available "
                              f"(not prepared in {tmp_path / 'tfds'}); prepare it with: "
                              "python -m data_pipelines.build celeba_faces"), err[-1]
    assert err[-1].endswith("--data_dir=DIR") and not (tmp_path / "out").exists()
