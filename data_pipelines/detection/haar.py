"""Viola-Jones (Haar cascade) face detector through OpenCV, with the `Face` API of `mtcnn`.

The cascade files ship inside the `opencv-python-headless` wheel (`cv2.data.haarcascades`); a
cascade is named by file name (looked up there) or given as a path. The detector runs on the
grayscale image (ITU-R 601 luma, OpenCV's `COLOR_RGB2GRAY`), optionally histogram-equalised.
`Face.score` is the number of neighbouring raw detections merged into the face (OpenCV's
`numDetections`), so larger is more certain; Haar faces have no landmarks (`None`).

Public API: `detect_faces(image)`, `detect_faces_batch(images)`, `HaarCascade` (configurable),
`cascade_path(name)`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from data_pipelines.detection.face import Face, as_rgb_uint8

__all__ = ["DEFAULT_CASCADE", "HaarCascade", "cascade_path", "detect_faces", "detect_faces_batch"]

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path(name: str | pathlib.Path) -> pathlib.Path:
    """Resolves a cascade file: an existing path, or a file name inside `cv2.data.haarcascades`.

    Raises:
      FileNotFoundError: one line naming the file and where it was looked for.
    """
    path = pathlib.Path(name)
    if path.is_file():
        return path
    shipped = pathlib.Path(cv2.data.haarcascades) / path.name
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"Haar cascade {name!s} not found (looked in {cv2.data.haarcascades})")


@functools.cache
def _load_cascade(path: str) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise ValueError(f"{path}: not a readable OpenCV cascade file")
    return classifier


@dataclasses.dataclass(frozen=True)
class HaarCascade:
    """A configured Haar cascade detector; `detect(image)` / `detect_batch(images)`.

    Attributes:
      cascade: cascade file name (in `cv2.data.haarcascades`) or path.
      scale_factor: ratio between the scanned window sizes (> 1).
      min_neighbors: raw detections needed to keep a face (higher: fewer false positives).
      min_face_size: smallest face side searched for, pixels.
      equalize: histogram-equalise the grayscale image first.
    """

    cascade: str = DEFAULT_CASCADE
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_size: int = 20
    equalize: bool = False

    def __post_init__(self):
        if self.scale_factor <= 1.0:
            raise ValueError(f"expected a Haar scale_factor > 1, got {self.scale_factor}")
        if self.min_neighbors < 0 or self.min_face_size < 1:
            raise ValueError("expected min_neighbors >= 0 and min_face_size >= 1, got "
                             f"{self.min_neighbors} and {self.min_face_size}")

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one uint8 `[H, W, 3]` RGB image, most neighbours (then largest) first."""
        gray = cv2.cvtColor(as_rgb_uint8(image), cv2.COLOR_RGB2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        classifier = _load_cascade(str(cascade_path(self.cascade)))
        size = (self.min_face_size, self.min_face_size)
        rects, neighbours = classifier.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=size)
        faces = [Face(box=(float(x), float(y), float(x + w), float(y + h)), score=float(n))
                 for (x, y, w, h), n in zip(np.reshape(rects, (-1, 4)),
                                            np.reshape(neighbours, (-1,)), strict=True)]
        return sorted(faces, key=lambda f: (-f.score, -f.area))

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """`detect` for each image (the cascade runs image by image)."""
        return [self.detect(image) for image in images]


@functools.cache
def _default_detector() -> HaarCascade:
    return HaarCascade()


def detect_faces(image: np.ndarray) -> list[Face]:
    """Faces in a uint8 `[H, W, 3]` RGB image with the default frontal-face cascade."""
    return _default_detector().detect(image)


def detect_faces_batch(images: Sequence[np.ndarray]) -> list[list[Face]]:
    """`detect_faces` for several images."""
    return _default_detector().detect_batch(images)
