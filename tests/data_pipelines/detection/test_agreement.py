"""Scoring detections against human landmarks (data_pipelines.detection.agreement)."""

import numpy as np
import pytest

from data_pipelines.detection import agreement
from data_pipelines.detection.face import Face
from tests.data_pipelines.conftest import CELEBA, CELEBA_LANDMARKS

TRUTH = np.array([[30, 50], [50, 50], [40, 60], [32, 70], [48, 70]], np.float64)  # IOD 20


def _face(points, box=(20, 35, 60, 85)) -> Face:
    return Face(box=box, score=0.99, landmarks=np.asarray(points, np.float32))


def test_load_landmarks_official_file():
    marks = agreement.load_landmarks(CELEBA_LANDMARKS)
    assert len(marks) == 512 and sorted(marks)[0] == "001001.jpg"
    # 001001.jpg    69  111  108  112   77  132   70  151  108  153 (178x218 frame)
    np.testing.assert_array_equal(marks["001001.jpg"][:2], [[69, 111], [108, 112]])
    auto = agreement.scaled_landmarks({"001001.jpg": marks["001001.jpg"]}, CELEBA)
    np.testing.assert_allclose(auto["001001.jpg"], marks["001001.jpg"] * 0.5)  # 89 / 178
    centres = agreement.scaled_landmarks({"001001.jpg": marks["001001.jpg"]}, CELEBA, 0.5,
                                         pixel_centres=True)
    np.testing.assert_allclose(centres["001001.jpg"], marks["001001.jpg"] * 0.5 - 0.25)


def test_load_landmarks_bad_row(tmp_path):
    path = tmp_path / "marks.txt"
    path.write_text("1\nnames\na.jpg 1 2 3\n")
    with pytest.raises(ValueError, match="marks.txt:3: expected"):
        agreement.load_landmarks(path)


def test_landmark_accuracy_matches_and_normalises():
    shifted = TRUTH + [2.0, 0.0]  # every point 2 px off: NME 2 / 20 = 0.1
    annotations = {"a": TRUTH, "b": TRUTH, "c": TRUTH, "d": TRUTH}
    detections = {
        "a": [_face(TRUTH)],
        "b": [_face(TRUTH + 30, box=(50, 65, 90, 115)), _face(shifted)],  # the one on the face
        "c": [],
        "d": [_face(TRUTH, box=(0, 0, 10, 10))],  # box away from the annotated face
    }
    acc = agreement.landmark_accuracy(annotations, detections)
    assert acc.detected.tolist() == [True, True, False, False]
    assert acc.detection_rate == 0.5
    np.testing.assert_allclose(acc.nme, [0.0, 0.1])
    np.testing.assert_allclose(acc.errors[1], 0.1)
    summary = acc.summary()
    assert summary["detected"] == 2 and summary["detected_faces"] == 4
    assert summary["per_landmark"]["nose"]["mean"] == pytest.approx(0.05)
    assert summary["failure_rate"] == 0.0  # 0.1 is not above FAILURE_NME
    assert acc.subset(["b"]).summary()["nme"]["mean"] == pytest.approx(0.1)


def test_match_annotation_picks_lowest_error():
    faces = [_face(TRUTH + 3), _face(TRUTH + 1), Face(box=(20, 35, 60, 85), score=1.0)]
    assert agreement.match_annotation(TRUTH, faces) == 1
    assert agreement.match_annotation(TRUTH, []) is None


def test_cli_human_landmarks(capsys):
    result = agreement.main([f"--landmarks={CELEBA_LANDMARKS}", "--landmark_rows=:8"])
    human = result["human_landmarks"]
    assert human["images"] == 8 and human["detected"] == 8
    assert 0.0 < human["nme"]["median"] < 0.08
    assert set(human["per_landmark"]) == {"left_eye", "right_eye", "nose", "mouth_left",
                                          "mouth_right"}
    assert '"human_landmarks"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        agreement.main([])
