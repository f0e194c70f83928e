import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments.cli import parse_range
from tests.conftest import REPO_ROOT, reference_files


def test_parse_range():
    assert parse_range("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_range("5") == [5]
    for bad in ("", "a-b", "3-1", "1,,x"):
        with pytest.raises(ValueError):
            parse_range(bad)


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


# The first snapshot of each family (StyleGAN2, StyleGAN3) in FLAXGAN_REFERENCE_DIR.
SNAPSHOTS = [pkl for family in ("stylegan2", "stylegan3")
             for pkl in [p.with_suffix(".pkl") for p in reference_files(family)
                         if p.with_suffix(".pkl").exists()][:1]]


@pytest.mark.parametrize("pkl", SNAPSHOTS, ids=lambda p: p.stem)
def test_generate_writes_seed_images_and_grid(pkl, tmp_path):
    # Any official snapshot: a conditional one needs a class (the last, to catch an off-by-one);
    # images are res x res with the network's channels (PNG mode L for one channel).
    kwargs = json.loads(pkl.with_suffix(".json").read_text())["G_kwargs"]
    res, channels, c_dim = kwargs["img_resolution"], kwargs["img_channels"], kwargs["c_dim"]
    label = [f"--class={c_dim - 1}"] if c_dim else []
    result = _run("experiments.generate", f"--network={pkl}", "--seeds=0-2,5", "--trunc=0.7",
                  f"--outdir={tmp_path}", "--grid=2", *label)
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0005.png"]
    shape = (res, res) if channels == 1 else (res, res, channels)
    image = np.asarray(Image.open(tmp_path / "seed0005.png"))
    assert image.dtype == np.uint8 and image.shape == shape and image.std() > 0
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * res, 2 * res, *shape[2:])
    np.testing.assert_array_equal(grid[res:, res:], image)  # seed 5: 4th tile, PNG is lossless


def test_generate_reports_a_bad_network_in_one_line(tmp_path):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"not a pickle at all")
    result = _run("experiments.generate", f"--network={bad}", f"--outdir={tmp_path}")
    assert result.returncode != 0
    assert "broken.pkl" in result.stderr.strip().splitlines()[-1]
