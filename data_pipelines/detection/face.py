"""The detector-independent face record and small box helpers."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Face", "LANDMARK_NAMES", "as_rgb_uint8", "box_iou"]

# Landmark order of `Face.landmarks`; "left" is the smaller x in the image.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
      box: `(x0, y0, x1, y1)` in pixels of the input image, `x0 <= x1`, `y0 <= y1`.
      score: detector confidence; a probability in [0, 1] for MTCNN, the number of neighbour
        detections for the Haar cascade.
      landmarks: float `[5, 2]` `(x, y)` in the order of `LANDMARK_NAMES`, or `None` for
        detectors without landmarks.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_json(self) -> dict:
        """A JSON-serialisable dict: `box`, `score` and `landmarks` (list or None)."""
        landmarks = None if self.landmarks is None else np.asarray(self.landmarks).tolist()
        return {"box": [float(v) for v in self.box], "score": float(self.score),
                "landmarks": landmarks}


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Checks a detector input: a uint8 `[H, W, 3]` array (returned as a contiguous array).

    Raises:
      ValueError: one line naming the shape or dtype that was expected.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of `[N, 4]` and `[M, 4]` `(x0, y0, x1, y1)` boxes -> `[N, M]` float64."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
