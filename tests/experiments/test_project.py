"""experiments.project: the official outputs round-trip; bad input is one line, nothing written."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import filters
from flaxgan import project, sample
from tests.conftest import REPO_ROOT, TEST_DATA
from tests.experiments.run_cases import run_in_subprocess

PKL = TEST_DATA / "reference" / "sg2_uncond32.pkl"  # official StyleGAN2, 32², 8 ws of 128
FACE = TEST_DATA / "celeba_small" / "001001.jpg"
STEPS = 5


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio's ffmpeg reader execs
def test_writes_the_official_outputs_and_a_video(tmp_path):
    import imageio

    out = tmp_path / "proj"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.project", f"--network={PKL}", f"--target={FACE}",
         f"--outdir={out}", "--align=celeba", f"--steps={STEPS}", "--distance=pixel",
         "--w_avg_samples=1000", "--space=w+", "--save_video"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["proj.mp4", "proj.png", "projected_w.npz", "target.png"]

    target = np.asarray(Image.open(out / "target.png"))
    np.testing.assert_array_equal(target, project.align_target(filters.read_image(FACE), 32))
    g = sample.load(PKL)
    with np.load(out / "projected_w.npz") as f:
        w = f["w"]
        noise = {k[len("noise/"):]: f[k] for k in f.files if k.startswith("noise/")}
        assert f["dist"].shape == f["loss"].shape == (STEPS,)
        assert str(f["space"]) == "w+" and str(f["distance"]) == "pixel"
    assert w.shape == (1, g.num_ws, g.w_dim) and w.dtype == np.float32  # official: [1, L, C]
    assert sorted(noise) == sorted(project._noise_names(g))
    # proj.png is w rendered with the stored noise maps (another batch: one grey level).
    again = sample.to_uint8(sample.synthesize(project.with_noise(g, noise), w))[0]
    proj = np.asarray(Image.open(out / "proj.png"))
    assert np.abs(proj.astype(int) - again).max() <= 1

    with imageio.get_reader(out / "proj.mp4") as video:
        frames = [np.asarray(frame) for frame in video]
    assert len(frames) == STEPS and frames[0].shape == (32, 64, 3)  # target | projection
    # H.264 is lossy: the left half is the target up to compression (8-bit, 16 Mbit/s).
    assert np.abs(frames[-1][:, :32].astype(int) - target).mean() < 12


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    grey = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey)
    base = [f"--network={PKL}", f"--outdir={out}"]
    cases = {  # argv -> what the one line must name
        (f"--target={tmp_path / 'missing.jpg'}",): "missing.jpg: no such file",
        (f"--target={text}",): "notes.jpg: not a readable image",
        (f"--target={FACE}", "--space=z"): "--space",
        (f"--target={FACE}", "--steps=0"): "--steps=0",
        (f"--target={FACE}", "--crop_box=a,b,c,d"): "--crop_box",
        (f"--target={FACE}", "--crop_box=0.5,0,0.2,1"): "crop_box must be",
        (f"--target={FACE}", "--vgg16=vgg.pt", "--distance=pixel"): "--vgg16",
        (f"--target={FACE}", f"--vgg16={tmp_path / 'vgg16.pt'}"): "VGG16 weights not found",
        (f"--target={grey}",): "grey.png: no face found",
    }
    results = run_in_subprocess("experiments.project", [[*base, *extra] for extra in cases])
    for result, expected in zip(results, cases.values(), strict=True):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] == 2 and "Traceback" not in result["stderr"], result
        assert lines[-1].startswith("error: ") and expected in lines[-1], (result["argv"],
                                                                           lines[-1])
    assert not out.exists()
