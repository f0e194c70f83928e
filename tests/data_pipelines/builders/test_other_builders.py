"""casia_webface, ffhq and image_mix end-to-end on tiny real manual_dirs."""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import build
from data_pipelines.builders import recipe as rc
from tests.data_pipelines.conftest import CELEBA, FACES_HQ, MISC, NONFACES


def _report(builder) -> dict:
    import pathlib

    return json.loads((pathlib.Path(builder.data_dir) / rc.REPORT_NAME).read_text())


def test_casia_webface_zip_mtcnn(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "CASIA-WebFace.zip", "w") as zf:
        for i in range(1, 5):
            zf.write(CELEBA / f"00102{i}.jpg", f"CASIA-WebFace/0000045/00{i}.jpg")
        for i in range(5, 8):
            zf.write(CELEBA / f"00102{i}.jpg", f"CASIA-WebFace/0000107/00{i}.jpg")
        zf.write(MISC / "cmyk_001601.jpg", "CASIA-WebFace/0000107/cmyk.jpg")
        zf.write(MISC / "truncated_001602.jpg", "CASIA-WebFace/0000107/bad.jpg")
        zf.write(MISC / "nonface_brick.jpg", "CASIA-WebFace/0000212/brick.jpg")
    builder = build.build("casia_webface", manual, "mtcnn_256", tmp_path / "out")
    assert builder.info.features["label"].names == ["0000045", "0000107", "0000212"]
    report = _report(builder)["splits"]["train"]
    assert (report["total"], report["kept"]) == (10, 8)
    assert report["counts"]["unreadable"] == 1 and report["counts"]["no_face"] == 1
    source = tfds.data_source("casia_webface/mtcnn_256", split="train", data_dir=tmp_path / "out")
    labels = sorted((source[i]["file_name"].decode(), int(source[i]["label"]))
                    for i in range(len(source)))
    assert labels[0] == ("0000045/001.jpg", 0) and ("0000107/cmyk.jpg", 1) in labels
    assert source[0]["image"].shape == (256, 256, 3)


def test_ffhq_256_from_the_command_line(tmp_path):
    images = tmp_path / "manual" / "images1024x1024" / "00000"
    images.mkdir(parents=True)
    for path in sorted(FACES_HQ.glob("*.jpg")):
        shutil.copy(path, images / path.name)
    shutil.copy(MISC / "not_an_image.jpg", images / "broken.png")
    out = subprocess.run(
        [sys.executable, "-m", "data_pipelines.build", "ffhq", f"--manual_dir={tmp_path}/manual",
         "--config=256", f"--data_dir={tmp_path}/out"], capture_output=True, text=True,
        check=True)
    assert "train: kept 4 of 5 images (dropped: unreadable 1)" in out.stdout
    source = tfds.data_source("ffhq/256", split="train", data_dir=tmp_path / "out")
    assert len(source) == 4 and source[0]["image"].shape == (256, 256, 3)
    # A Lanczos 4x reduction keeps the mean colour.
    from PIL import Image

    name = source[0]["file_name"].decode()
    original = np.asarray(Image.open(FACES_HQ / name.split("/")[-1]).convert("RGB"), np.float64)
    assert abs(original.mean() - source[0]["image"].mean()) < 1.0


def test_image_mix_weights_labels_and_gray(tmp_path):
    manual = tmp_path / "manual"
    (manual / "faces").mkdir(parents=True)
    (manual / "animals").mkdir()
    for i in range(1, 7):
        shutil.copy(CELEBA / f"00103{i}.jpg", manual / "faces")
    for path in sorted(NONFACES.glob("*.jpg"))[:2]:
        shutil.copy(path, manual / "animals")
    shutil.copy(MISC / "grayscale_001600.jpg", manual / "faces")
    (manual / "sources.json").write_text(json.dumps(
        {"sources": [{"name": "faces", "weight": 3.0}, {"name": "animals"}]}))
    builder = build.build("image_mix", manual, "resize_64", tmp_path / "out")
    assert builder.info.features["label"].names == ["faces", "animals"]
    assert builder.info.metadata["source_weights"] == {"faces": 3.0, "animals": 1.0}
    source = builder.as_data_source(split="train")
    got = sorted((int(source[i]["label"]), float(source[i]["weight"])) for i in range(len(source)))
    assert got == [(0, 3.0)] * 7 + [(1, 1.0)] * 2
    gray = build.build("image_mix", manual, "haar_64_gray", tmp_path / "out")
    report = _report(gray)["splits"]["train"]
    assert report["total"] == 9 and report["kept"] >= 6
    assert gray.as_data_source(split="train")[0]["image"].shape == (64, 64, 1)


def test_image_mix_needs_sources(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "notes.txt").write_text("no images here\n")
    with pytest.raises(rc.MissingManualFiles, match="no source folders"):
        build.build("image_mix", tmp_path / "manual", "raw", tmp_path / "out")
    (tmp_path / "manual" / "empty").mkdir()
    with pytest.raises(rc.MissingManualFiles, match="hold no images"):
        build.build("image_mix", tmp_path / "manual", "raw", tmp_path / "out")


def test_all_dropped_is_one_clear_error(tmp_path):
    (tmp_path / "manual" / "animals").mkdir(parents=True)
    shutil.copy(MISC / "nonface_brick.jpg", tmp_path / "manual" / "animals")
    with pytest.raises(Exception, match="no image kept"):
        build.build("image_mix", tmp_path / "manual", "mtcnn_256", tmp_path / "out")


@pytest.mark.parametrize("manual", ["missing", "empty"])
def test_command_line_names_a_missing_or_empty_manual_dir_in_one_line(tmp_path, manual):
    (tmp_path / "empty").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "data_pipelines.build", "celeba_faces",
         f"--manual_dir={tmp_path / manual}", f"--data_dir={tmp_path}/out"],
        capture_output=True, text=True)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / manual}: manual_dir is missing or empty")
    assert "list_attr_celeba.txt" in last and "Traceback" not in out.stderr
