"""Crops: facenet margin box, Haar crop, FFHQ-style alignment, whole-image resize."""

import json

import numpy as np
import pytest

from data_pipelines import crop
from tests.data_pipelines.conftest import CELEBA, FACES_HQ, REFERENCE, read_rgb


def test_margin_box_and_crop():
    image = np.zeros((100, 80, 3), np.uint8)
    image[40:60, 30:50] = 255
    box = (30, 40, 50, 60)
    assert crop.margin_box(box, 100, 80, margin=10).tolist() == [25, 35, 55, 65]
    assert crop.margin_box(box, 100, 80, margin=100).tolist() == [0, 0, 80, 100]  # clipped
    out = crop.margin_crop(image, box, margin=20, size=40, resample="nearest")
    assert out.shape == (40, 40, 3)
    # The 20x20 white square fills the central half of the 40x40 box + 20 px margin crop.
    assert out[10:30, 10:30].min() == 255 and out[:9].max() == 0 and out[:, 31:].max() == 0
    assert crop.margin_box((30, 40, 50, 50), 100, 80, margin=0, square=True).tolist() == \
        [30, 35, 50, 55]


def test_box_affine_maps_box_corners():
    affine = crop.box_affine((10, 20, 30, 60), 64)
    # float32 pixel coordinates of a float64 map: rounding (one ulp of 64 is 8e-6, and a BLAS
    # matmul may not give exact zeros) is far below a wrong affine's pixels.
    np.testing.assert_allclose(crop.transform_points([[10, 20], [30, 60]], affine),
                               [[0, 0], [64, 64]], atol=1e-4)


def test_haar_crop_gray():
    image = read_rgb(CELEBA / "001001.jpg")
    out = crop.haar_crop(image, (20, 30, 70, 80), size=64, grayscale=True)
    assert out.shape == (64, 64, 1) and out.dtype == np.uint8
    rgb = crop.haar_crop(image, (20, 30, 70, 80), size=64)
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(luma - out[..., 0]).max() <= 1.0


def test_align_face_puts_eyes_level_and_centred():
    reference = json.loads(REFERENCE.read_text())["images"]
    name = "data_pipelines/faces_hq/021612.jpg"
    landmarks = np.array(reference[name][0]["landmarks"], np.float64)
    image = read_rgb(FACES_HQ / "021612.jpg")
    # Rotate the face by 20 degrees (and its landmarks) to make the test non-trivial.
    import cv2

    rot = cv2.getRotationMatrix2D((512, 512), 20, 1.0)
    image = cv2.warpAffine(image, rot, (1024, 1024), borderMode=cv2.BORDER_REFLECT)
    landmarks = landmarks @ rot[:, :2].T + rot[:, 2]
    out, affine = crop.align_face(image, landmarks, size=128, return_affine=True)
    assert out.shape == (128, 128, 3)
    pts = crop.transform_points(landmarks, affine)
    assert abs(pts[0, 1] - pts[1, 1]) < 1.5  # eyes level
    assert abs((pts[0, 0] + pts[1, 0]) / 2 - 64) < 6  # and centred
    assert 0.2 * 128 < pts[1, 0] - pts[0, 0] < 0.35 * 128  # FFHQ eye distance ~ 1/4 side


def test_resize_image_centre_crops():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 200
    out = crop.resize_image(image, 20, resample="box")
    assert out.shape == (20, 20, 3) and out.min() == 200


@pytest.mark.parametrize("call", [
    lambda: crop.resample_filter("cubic"),
    lambda: crop.margin_crop(np.zeros((8, 8), np.uint8), (0, 0, 4, 4)),
    lambda: crop.clip_box((20, 20, 30, 30), 10, 10),
    lambda: crop.ffhq_quad(np.zeros((4, 2))),
])
def test_errors(call):
    with pytest.raises(ValueError, match="expected|outside"):
        call()
