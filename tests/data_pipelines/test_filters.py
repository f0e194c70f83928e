"""Per-image decisions, image decoding of awkward files, the JSON report."""

import json

import numpy as np
import pytest

from data_pipelines import filters
from data_pipelines.detection.face import Face
from tests.data_pipelines.conftest import MISC

BIG = Face((0, 0, 50, 60), 0.99)
SMALL = Face((0, 0, 10, 12), 0.95)
WEAK = Face((0, 0, 40, 40), 0.5)


@pytest.mark.parametrize("faces, policy, reason, chosen", [
    (None, filters.FilterPolicy(), "kept", None),
    ([], filters.FilterPolicy(), "no_face", None),
    ([WEAK], filters.FilterPolicy(min_score=0.9), "low_score", None),
    ([SMALL, BIG], filters.FilterPolicy(), "kept", BIG),
    ([SMALL, BIG], filters.FilterPolicy(multiple="best"), "kept", BIG),
    ([SMALL, WEAK], filters.FilterPolicy(multiple="best"), "kept", SMALL),
    ([SMALL, BIG], filters.FilterPolicy(multiple="drop"), "multiple_faces", None),
    ([SMALL, WEAK], filters.FilterPolicy(min_score=0.9, multiple="drop"), "kept", SMALL),
    ([SMALL], filters.FilterPolicy(min_face_size=20), "too_small", SMALL),
    ([BIG], filters.FilterPolicy(min_image_size=200), "too_small", None),
])
def test_decide(faces, policy, reason, chosen):
    decision = filters.decide(faces, (100, 120, 3), policy)
    assert decision.reason == reason and decision.keep == (reason == "kept")
    assert decision.face == chosen


def test_bad_policy():
    with pytest.raises(ValueError, match="multiple-face policy"):
        filters.FilterPolicy(multiple="first")


def test_read_image_converts_modes():
    gray = filters.read_image(MISC / "grayscale_001600.jpg")
    cmyk = filters.read_image((MISC / "cmyk_001601.jpg").read_bytes(), name="cmyk.jpg")
    for image in (gray, cmyk):
        assert image.shape == (109, 89, 3) and image.dtype == np.uint8
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert cmyk.std() > 10  # a real face, not a blank


@pytest.mark.parametrize("name", ["truncated_001602.jpg", "not_an_image.jpg"])
def test_read_image_errors_name_the_file(name):
    with pytest.raises(filters.UnreadableImage, match=name):
        filters.read_image(MISC / name)


def test_report(tmp_path):
    report = filters.FilterReport(sample_size=1, meta={"config": "mtcnn_256"})
    report.add("a.jpg", filters.decide([BIG], (100, 100)))
    report.add("b.jpg", filters.decide([], (100, 100)))
    report.add("c.jpg", filters.decide([], (100, 100)))
    report.add("d.jpg", filters.unreadable("d.jpg: not a readable image"))
    report.add("e.jpg", filters.decide([SMALL, BIG], (100, 100)))
    data = json.loads(report.write(tmp_path / "r.json").read_text())
    assert data["total"] == 5 and data["kept"] == 2 and data["dropped"] == 3
    assert data["counts"]["no_face"] == 2 and data["counts"]["unreadable"] == 1
    assert data["dropped_samples"]["no_face"] == ["b.jpg"]  # sample_size=1
    assert data["images_with_several_faces"] == 1 and data["meta"]["config"] == "mtcnn_256"
    assert report.summary() == "kept 2 of 5 images (dropped: unreadable 1, no_face 2)"
    with pytest.raises(ValueError, match="unknown filter reason"):
        report.add("x", filters.Decision("blurry"))
