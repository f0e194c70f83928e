"""Face detectors with one API: `detect_faces(uint8 [H, W, 3] RGB) -> list[Face]`.

`mtcnn` (Flax, original weights, 5 landmarks) and `haar` (OpenCV cascade, no landmarks).
"""

from data_pipelines.detection.face import LANDMARK_NAMES, Face, box_iou

__all__ = ["Face", "LANDMARK_NAMES", "box_iou"]
