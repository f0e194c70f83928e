"""celeba_faces end-to-end on a tiny real manual_dir (with a corrupt file, a non-image, a
non-face, a grayscale and a CMYK image), read back through tfds.data_source."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import build
from data_pipelines.builders import recipe as rc
from tests.data_pipelines.conftest import (
    CELEBA_LANDMARKS,
    CELEBA_TEST,
    CELEBA_TRAIN,
    CELEBA_VALIDATION,
)


def _report(builder) -> dict:
    return json.loads((pathlib.Path(builder.data_dir) / rc.REPORT_NAME).read_text())


def test_mtcnn_256_counts_and_report(celeba_mtcnn):
    splits = celeba_mtcnn.info.splits
    assert splits["train"].num_examples == len(CELEBA_TRAIN)
    assert splits["validation"].num_examples == len(CELEBA_VALIDATION)
    assert splits["test"].num_examples == 2  # grayscale + CMYK faces
    report = _report(celeba_mtcnn)
    assert report["recipe"]["detector"] == "mtcnn" and report["recipe"]["size"] == 256
    test = report["splits"]["test"]
    assert test["total"] == len(CELEBA_TEST)
    assert test["counts"] == {"kept": 2, "unreadable": 2, "too_small": 0, "no_face": 2,
                              "low_score": 0, "multiple_faces": 0}
    assert sorted(s.split(":")[0] for s in test["dropped_samples"]["unreadable"]) == \
        ["009003.jpg", "009004.jpg"]
    assert sorted(s.split(":")[0] for s in test["dropped_samples"]["no_face"]) == \
        ["001401.jpg", "009005.jpg"]
    assert report["splits"]["validation"]["images_with_several_faces"] == 1
    assert "kept 2 of 6 images (dropped: unreadable 2, no_face 2)" in \
        build.report_summary(celeba_mtcnn)


def test_mtcnn_256_read_back(celeba_mtcnn, tfds_dir):
    source = tfds.data_source("celeba_faces/mtcnn_256", split="validation", data_dir=tfds_dir)
    examples = [source[i] for i in range(len(source))]
    names = sorted(e["file_name"].decode() for e in examples)
    assert names == sorted(CELEBA_VALIDATION)
    for e in examples:
        assert e["image"].shape == (256, 256, 3) and e["image"].dtype == np.uint8
        assert set(e["attributes"]) >= {"Male", "Smiling", "Young"} and len(e["attributes"]) == 40
        assert 0.7 < e["face"]["score"] <= 1.0
        lm = e["landmarks"]
        # Eyes above the mouth, left eye left, everything inside the crop.
        assert lm[0, 0] < lm[1, 0] and lm[:2, 1].mean() < lm[3:, 1].mean()
        assert np.all((lm > 0) & (lm < 256))
    first = next(e for e in examples if e["file_name"] == b"001017.jpg")
    attrs = (pathlib.Path(__file__).parents[2] / "data/celeba_small/list_attr_celeba.txt")
    row = next(r for r in attrs.read_text().splitlines() if r.startswith("001017.jpg")).split()
    assert first["attributes"]["5_o_Clock_Shadow"] == (row[1] == "1")
    assert first["attributes"]["Young"] == (row[40] == "1")


def test_mtcnn_256_landmarks_are_the_human_annotation(celeba_mtcnn, tfds_dir):
    """The stored landmarks are the official CelebA points (halved to the 89x109 copies) carried
    through the crop, and our MTCNN's own points land near them."""
    from data_pipelines import crop
    from data_pipelines.detection import agreement, mtcnn
    from tests.data_pipelines.conftest import CELEBA, read_rgb

    official = agreement.load_landmarks(CELEBA_LANDMARKS)
    recipe = celeba_mtcnn.builder_config.recipe
    source = tfds.data_source("celeba_faces/mtcnn_256", split="train", data_dir=tfds_dir)
    for e in (source[i] for i in range(len(source))):
        name = e["file_name"].decode()
        box = crop.margin_box(tuple(e["face"]["box"]), 109, 89, margin=recipe.margin,
                              square=recipe.square)
        affine = crop.box_affine(box, recipe.size)
        np.testing.assert_allclose(e["landmarks"], crop.transform_points(official[name] / 2,
                                                                          affine), atol=1e-3)
        faces = mtcnn.detect_faces(read_rgb(CELEBA / name))
        ours = crop.transform_points(max(faces, key=lambda f: f.area).landmarks, affine)
        iod = np.linalg.norm(e["landmarks"][0] - e["landmarks"][1])
        assert np.mean(np.linalg.norm(ours - e["landmarks"], axis=1)) / iod < 0.15, name


def test_haar_64_gray(celeba_manual_dir, tfds_dir):
    builder = build.build("celeba_faces", celeba_manual_dir, "haar_64_gray", tfds_dir)
    source = builder.as_data_source(split="train")
    image = source[0]["image"]
    assert image.shape == (64, 64, 1) and image.dtype == np.uint8
    test = _report(builder)["splits"]["test"]
    assert test["counts"]["unreadable"] == 2 and test["total"] == len(CELEBA_TEST)
    # Haar finds no landmarks: landmarks come from the derived annotation file where present.
    assert np.all(source[0]["landmarks"] >= 0)
    assert builder.info.splits["train"].num_examples >= 14  # Haar misses some 89x109 faces


def test_missing_manual_files(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(rc.MissingManualFiles, match="list_attr_celeba.txt"):
        build.build("celeba_faces", tmp_path, "raw", tmp_path / "out")


def test_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown config"):
        build.build("celeba_faces", tmp_path, "mtcnn_999", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        build.build("lfw", tmp_path)
