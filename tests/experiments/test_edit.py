"""experiments.directions and experiments.edit: outputs end to end on a tiny generator with a
tiny (untrained) attribute classifier; bad input is one line and writes nothing."""

import json
import os

import imageio
import jax
import numpy as np
import pytest
from PIL import Image

from flaxgan import edit, pretrained, sample
from flaxgan.metrics import attributes
from tests.conftest import TEST_DATA
from tests.experiments.run_cases import assert_one_line, run_in_subprocess

# JAX warns when a process that loaded it starts a subprocess (the entry points, ffmpeg).
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")

PKL = TEST_DATA / "reference" / "sg2_uncond32.pkl"  # official StyleGAN2, 32², 8 ws of 128


def _run_cases(module: str, cases: list[list[str]]) -> list[dict]:
    # Without the classifier variable, so that its absence is what the cases see.
    return run_in_subprocess(module, cases, env={"FLAXGAN_ATTRIBUTE_CLASSIFIER": None})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Runs experiments.directions: one real fit (W and Z) and the bad inputs."""
    root = tmp_path_factory.mktemp("directions")
    config = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=16)
    clf = attributes.save_classifier(root / "clf", config,
                                     attributes.init_params(config, jax.random.key(0)))
    dirs, few, bad = root / "dirs", root / "few", root / "bad"
    # A model folder that carries its classifier (as the bundled celeba32 does).
    carrier = root / "carrier"
    sample.export(sample.load(PKL), carrier)
    attributes.save_classifier(carrier / pretrained.ATTRIBUTES_DIR, config,
                               attributes.init_params(config, jax.random.key(0)))
    base = [f"--network={PKL}", f"--classifier={clf}"]
    cases = {
        (*base, "--attributes=smile,male", "--num=256", "--keep=0.1", "--spaces=w,z",
         f"--outdir={dirs}"): None,
        (f"--network={carrier}", "--attributes=male", "--num=64", "--keep=0.1",
         f"--outdir={root / 'carried'}"): None,
        (*base, "--attributes=smile", "--num=20", f"--outdir={few}"): "Smiling (w): 20 scored",
        (*base, "--attributes=smiel", f"--outdir={bad}"): "unknown attribute 'smiel'",
        (*base, "--attributes=smile,Smiling", f"--outdir={bad}"): "several names for Smiling",
        (*base, "--spaces=w,q", f"--outdir={bad}"): "--spaces=w,q",
        (*base, "--num=0", f"--outdir={bad}"): "--num=0",
        (*base, "--keep=0.9", f"--outdir={bad}"): "--keep=0.9",
        (f"--network={PKL}", "--attributes=male", f"--outdir={bad}"): "--classifier=DIR",
        (f"--network={PKL}", f"--classifier={root / 'nowhere'}", f"--outdir={bad}"):
            "classifier.json: attribute classifier file not found",
        (f"--network={root / 'missing.pkl'}", f"--outdir={bad}", "--attributes=yaw"):
            "missing.pkl",
    }
    results = _run_cases("experiments.directions", [list(c) for c in cases])
    return dirs, few, bad, root, list(zip(results, cases.values(), strict=True))


def test_directions_writes_a_file_per_direction_and_a_summary(fitted):
    dirs, *_, results = fitted
    assert results[0][0]["code"] == 0, results[0][0]
    assert sorted(os.listdir(dirs)) == ["directions.json", "male.npz", "male_z.npz", "smile.npz",
                                        "smile_z.npz"]
    summary = json.loads((dirs / "directions.json").read_text())
    assert summary["num"] == 256 and summary["failed"] == {}
    assert sorted(summary["directions"]) == ["male", "male_z", "smile", "smile_z"]
    for key, row in summary["directions"].items():
        d = edit.load_direction(dirs / row["file"])
        assert d.space == ("z" if key.endswith("_z") else "w")
        assert d.dim == (512 if d.space == "z" else 128) and d.num_samples == 256
        assert d.network == summary["fingerprint"] and len(d.network) == 64
        assert d.accuracy == row["accuracy"] and row["num_kept_per_side"] == 25
    assert edit.load_direction(dirs / "smile.npz").attribute == "Smiling"


def test_directions_uses_the_classifier_the_network_carries(fitted):
    *_, root, results = fitted
    assert results[1][0]["code"] == 0, results[1][0]
    summary = json.loads((root / "carried" / "directions.json").read_text())
    assert summary["classifier"] == str(root / "carrier" / pretrained.ATTRIBUTES_DIR)
    assert sorted(summary["directions"]) == ["male"]


def test_directions_bad_input_is_one_line(fitted):
    _, few, bad, _, results = fitted
    for result, expected in results[2:]:
        assert_one_line(result, expected)
    assert not bad.exists()
    # An attribute that cannot be fitted: named in the summary and the error line.
    assert json.loads((few / "directions.json").read_text())["failed"]["smile"]


def test_edit_outputs_and_bad_input(fitted, tmp_path):
    dirs = fitted[0]
    g = sample.load(PKL)
    ws = sample.mapping(g, sample.seeds_to_z(g, [0, 1, 2]))
    projected = tmp_path / "projected_w.npz"
    np.savez(projected, w=ws[2:])  # the official layout [1, num_ws, w_dim]
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    no_w, flat = tmp_path / "no_w.npz", tmp_path / "flat.npz"
    np.savez(no_w, x=np.zeros(3))
    np.savez(flat, w=np.zeros([3, 128], np.float32))
    small = tmp_path / "small.npz"
    edit.save_direction(small, edit.Direction(normal=np.eye(7, dtype=np.float32)[0],
                                              offset=0.0, scale=1.0, mean=np.zeros(7, np.float32),
                                              attribute="x"))
    seeds, proj, zdir = tmp_path / "seeds", tmp_path / "proj", tmp_path / "zdir"
    bad = tmp_path / "bad"
    base = [f"--network={PKL}", f"--directions_dir={dirs}"]
    ok = [f"--outdir={bad}", "--direction=smile"]
    cases = {
        (*base, "--seeds=0-2", "--direction=smile", "--condition=male", "--layers=coarse",
         "--strengths=-2,0,2", "--save_video", "--video_frames=4", f"--outdir={seeds}"): None,
        (*base, f"--projected_w={projected}", f"--direction={dirs / 'smile.npz'}",
         "--strengths=0,1", f"--outdir={proj}"): None,
        (*base, "--seeds=0", "--direction=smile_z", "--strengths=0,1", f"--outdir={zdir}"): None,
        (*base, *ok): "exactly one of --seeds and --projected_w",
        (*base, *ok, "--seeds=0", f"--projected_w={projected}"): "exactly one",
        (*base, *ok, "--seeds=0", "--strengths=a"): "--strengths=a",
        (*base, *ok, "--seeds=0", "--strengths=1e9"): "within +-100",
        (*base, *ok, "--seeds=0", "--layers=top"): "--layers=top",
        (*base, *ok, "--seeds=0", "--layers=0-99"): "--layers=0-99",
        (*base, *ok[:1], "--seeds=0", "--direction=nowhere"): "--direction=nowhere: no such",
        (*base, *ok[:1], "--seeds=0", f"--direction={text}"): "not a readable .npz",
        (*base, *ok[:1], "--seeds=0", f"--direction={small}"): "7-D W direction",
        (*base, *ok, "--seeds=0", "--condition=smile"): "span",
        (*base, *ok, f"--projected_w={tmp_path / 'none.npz'}"): "none.npz: no such file",
        (*base, *ok, f"--projected_w={no_w}"): "no key 'w'",
        (*base, *ok, f"--projected_w={flat}"): "[1, 8, 128]",
        (*base, *ok[:1], f"--projected_w={projected}", "--direction=smile_z"): "Z direction",
        (*base, *ok[:1], "--seeds=0", "--direction=smile_z", "--layers=fine"): "W directions",
    }
    results = _run_cases("experiments.edit", [list(c) for c in cases])
    for result, expected in zip(results, cases.values(), strict=True):
        if expected is None:
            assert result["code"] == 0, result
        else:
            assert_one_line(result, expected)
    assert not bad.exists()

    # Seeds: a row per seed, a column per strength; strength 0 is the seeds' own w.
    names = sorted(os.listdir(seeds))
    assert len(names) == 3 * 3 + 3 and "seed0002_-2.00.png" in names and "edit.mp4" in names
    assert Image.open(seeds / "grid.png").size == (3 * 32, 3 * 32)
    with np.load(seeds / "edited_w.npz") as f:
        edited, strengths = f["w"], f["strengths"]
    np.testing.assert_array_equal(strengths, [-2, 0, 2])
    np.testing.assert_array_equal(edited[1], ws)
    changed = np.abs(edited[2] - ws).max(axis=(0, 2)) > 0
    assert changed.tolist() == [True] * 3 + [False] * 5  # coarse: the 4² and 8² ws
    smile, male = (edit.load_direction(dirs / f) for f in ("smile.npz", "male.npz"))
    step = (edited[2] - ws)[0, 0]
    assert abs(step @ male.normal) < 1e-4 * np.linalg.norm(step)  # conditioned on male
    with imageio.get_reader(seeds / "edit.mp4") as video:
        frames = [np.asarray(frame) for frame in video]
    assert len(frames) == 4 and frames[0].shape == (256, 768, 3)  # 3 x 32² upscaled 8x

    # A projection: strength 0 renders its w.
    image = np.asarray(Image.open(proj / "proj_+0.00.png"), np.int32)
    expected = sample.to_uint8(sample.synthesize(g, ws[2:]))[0]
    assert np.abs(image - expected).max() <= 1
    assert sorted(os.listdir(zdir)) == ["edited_w.npz", "grid.png", "seed0000_+0.00.png",
                                        "seed0000_+1.00.png"]
