"""experiments.eval on real-world folders (issue 14, item 4): mixed sizes batched together,
unreadable files skipped and counted, and every bad input one line with exit status 2.

A tiny detector (mean colour after a 16x16 resize) stands in for the Inception, so these run
in seconds; the resize-once path is the one the real detectors use (`input_size`)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from PIL import Image

from experiments import cli
from experiments import eval as eval_main
from flaxgan.metrics import detectors, features, torchfile
from tests.conftest import TEST_DATA

SIZE = 16  # the stand-in detector's input side


def _mean_colour(params, images):
    del params
    return torchfile.resize_bilinear(images.astype(jnp.float32), SIZE).mean(axis=(1, 2))


@pytest.fixture(scope="module")
def extractor():
    return features.make_extractor(_mean_colour, {}, batch_size=8, name="mean-colour",
                                   input_size=SIZE)


@pytest.fixture
def calls(monkeypatch, extractor):
    """Patches eval's detectors with the stand-in; returns the batch sizes it was called with."""
    seen: list[int] = []

    def fn(images):
        seen.append(len(images))
        return extractor.fn(images)

    counted = features.Extractor(fn, extractor.name, extractor.batch_size, SIZE)
    monkeypatch.setattr(detectors, "load_detectors", lambda *a, **k: {"inception": counted})
    return seen


def _images(folder, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _main(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["eval", "--no_cache", *argv])
    eval_main.main([])


def _one_line_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _main(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_mixed_sizes_are_resized_once_and_batched_together(tmp_path, calls, capsys):
    real = _images(tmp_path / "real", [(20, 30), (64, 48), (20, 30), (33, 33)], seed=1)
    fake = _images(tmp_path / "fake", [(40, 40), (17, 90), (25, 25), (40, 40)], seed=2)
    _main(f"--real_dir={real}", f"--fake_dir={fake}", "--metrics=fid",
          f"--out={tmp_path / 'm.jsonl'}")
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["num_images"] == {"real": 4, "fake": 4} and np.isfinite(record["value"])
    assert calls == [4, 4]  # one device step per folder, not one per size change
    # The same features as each image through the detector's own resize.
    source = features.folder_source(real)
    assert source.mixed_sizes and source.resolution is None
    one_by_one = np.concatenate([np.asarray(_mean_colour(None, b)) for b in source.batches(1)])
    batched = np.concatenate(list(features.iterate_features(
        source, features.make_extractor(_mean_colour, {}, batch_size=8, input_size=SIZE),
        progress=False)))
    np.testing.assert_allclose(batched, one_by_one, atol=0.05)


def test_unreadable_images_are_skipped_and_counted(tmp_path, calls, capsys):
    real = _images(tmp_path / "real", [(32, 32)] * 3)
    (real / "garbage.jpg").write_bytes(b"not an image")
    data = (TEST_DATA / "celeba_small" / "001001.jpg").read_bytes()
    (real / "truncated.jpg").write_bytes(data[: len(data) // 3])
    fake = _images(tmp_path / "fake", [(32, 32)] * 3, seed=3)
    _main(f"--real_dir={real}", f"--fake_dir={fake}", "--metrics=fid,kid",
          f"--out={tmp_path / 'm.jsonl'}")
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()[-2:]]
    for record in lines:
        assert record["num_images"] == {"real": 3, "fake": 3}
        assert record["skipped_unreadable"] == {"real": 2}


def test_out_in_a_new_folder_is_created_and_an_unwritable_one_refused(tmp_path, calls, capsys):
    real = _images(tmp_path / "real", [(32, 32)] * 3)
    fake = _images(tmp_path / "fake", [(32, 32)] * 3, seed=4)
    out = tmp_path / "new" / "deeper" / "m.jsonl"
    _main(f"--real_dir={real}", f"--fake_dir={fake}", "--metrics=fid", f"--out={out}")
    assert json.loads(out.read_text().splitlines()[-1])["metric"] == "fid"
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    calls.clear()
    line = _one_line_error(capsys, f"--real_dir={real}", f"--fake_dir={fake}", "--metrics=fid",
                           f"--out={blocker / 'm.jsonl'}")
    assert f"--out={blocker / 'm.jsonl'}" in line and "not a writable folder" in line, line
    assert calls == []  # refused before any feature was extracted


@pytest.mark.parametrize("case", ["empty", "non_images", "nonexistent", "missing", "one_image"])
def test_bad_folders_are_one_line(tmp_path, calls, capsys, case):
    fake = _images(tmp_path / "fake", [(32, 32)] * 3)
    real = tmp_path / "real"
    real.mkdir()
    if case == "non_images":
        (real / "a.png").write_text("text")
        (real / "notes.txt").write_text("text")
    if case == "one_image":
        _images(real, [(32, 32)])
    argv = {"missing": [], "nonexistent": [f"--real_dir={tmp_path / 'nope'}"]}.get(
        case, [f"--real_dir={real}"])
    for metric in ("fid", "kid") if case == "one_image" else ("fid",):
        line = _one_line_error(capsys, *argv, f"--fake_dir={fake}", f"--metrics={metric}",
                               f"--out={tmp_path / 'm.jsonl'}")
        expected = {"empty": str(real), "non_images": "readable", "nonexistent": "nope",
                    "missing": "--real_dir", "one_image": "at least 2 images"}[case]
        assert expected in line, line


def test_hostile_network_is_one_line(tmp_path, calls, capsys):
    from tools import make_hostile_corpus as corpus

    case = next(c for c in corpus.CASES if c.name == "laughs_lists")
    path = corpus.write(case, tmp_path)
    line = _one_line_error(capsys, f"--network={path}", "--metrics=fid",
                           f"--real_dir={_images(tmp_path / 'real', [(8, 8)] * 2)}")
    assert str(path) in line and "expand" in line


def test_pr_names_its_inception_features_and_warns(tmp_path, calls, capsys, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(eval_main.logging, "warning",
                        lambda msg, *args: warnings.append(msg % args if args else msg))
    real = _images(tmp_path / "real", [(32, 32)] * 6, seed=1)
    fake = _images(tmp_path / "fake", [(32, 32)] * 6, seed=2)
    flags.FLAGS.unparse_flags()
    # Dashed names, as an official-style command line gives them.
    eval_main.main(cli.parse_flags(["eval", f"--real-dir={real}", f"--fake-dir={fake}",
                                    "--metrics=pr,fid", "--no-cache",
                                    f"--out={tmp_path / 'm.jsonl'}"]))
    pr, fid = (json.loads(x) for x in capsys.readouterr().out.strip().splitlines()[-2:])
    assert pr["metric"] == "pr" and pr["features"] == "inception"
    assert set(pr["value"]) == {"pr_precision", "pr_recall"} and fid["features"] == "inception"
    assert any(w.startswith("pr: precision/recall on FID Inception features") for w in warnings)
    assert detectors.feature_network("pr50k3_full") == "vgg16"


def test_unknown_metric_is_one_line_without_the_help(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main("--metrics=fid,fid51k", f"--fake_dir={tmp_path}")
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --metrics: unknown metric 'fid51k' (did you mean fid50k?)")
    assert "valid: fid, " in line and "pr50k3_full" in line


def test_tfds_dataset_not_prepared_is_one_line_with_the_hint(tmp_path, capsys):
    fake = _images(tmp_path / "fake", [(8, 8)] * 2)
    line = _one_line_error(capsys, "--data=celeba_faces/mtcnn_256",
                           f"--data_dir={tmp_path / 'tfds'}", f"--fake_dir={fake}",
                           "--metrics=fid")
    assert line.startswith("error: dataset 'celeba_faces/mtcnn_256' is not available (not "
                           f"prepared in {tmp_path / 'tfds'}); prepare it with: python -m "
                           "data_pipelines.build celeba_faces --manual_dir=DIR "
                           "--config=mtcnn_256, or point to its TFDS data dir with "
                           "--data_dir=DIR"), line
