"""Dataset builds with hostile file names and links (issue 14, item 3): a name that is not
UTF-8 is built like any other file, a symlink loop is counted in filter_report.json."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from data_pipelines import build
from data_pipelines.builders import recipe as rc
from tests.data_pipelines.conftest import CELEBA, read_rgb

BAD_NAME = b"bad\xff\xfe.jpg"


def test_non_utf8_name_is_built_and_symlink_loops_are_counted(tmp_path):
    folder = tmp_path / "manual" / "faces"
    folder.mkdir(parents=True)
    for name in ("001001.jpg", "001002.jpg"):
        shutil.copy(CELEBA / name, folder / name)
    shutil.copy(CELEBA / "001003.jpg", os.path.join(os.fsencode(folder), BAD_NAME))
    os.symlink("loop_b.jpg", folder / "loop_a.jpg")
    os.symlink("loop_a.jpg", folder / "loop_b.jpg")
    builder = build.build("image_mix", tmp_path / "manual", "raw", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "image_mix" / "raw" / "1.0.0"
                         / rc.REPORT_NAME).read_text())["splits"]["train"]
    assert report["kept"] == 3 and report["counts"]["unreadable"] == 2
    assert all("symbolic links" in s for s in report["dropped_samples"]["unreadable"])
    ds = builder.as_data_source("train")
    names = sorted(ds[i]["file_name"] for i in range(len(ds)))
    assert names == [b"faces/001001.jpg", b"faces/001002.jpg", b"faces/bad\\xff\\xfe.jpg"]
    image = next(ds[i]["image"] for i in range(len(ds)) if b"bad" in ds[i]["file_name"])
    np.testing.assert_array_equal(np.asarray(image), read_rgb(CELEBA / "001003.jpg"))
