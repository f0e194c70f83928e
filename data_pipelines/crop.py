"""Face crops for dataset preparation: facenet-style box + margin, Haar crops, FFHQ alignment.

All functions take a uint8 `[H, W, C]` image and return a uint8 `[size, size, C']` image; boxes
are `(x0, y0, x1, y1)` in pixels, landmarks float `[5, 2]` `(x, y)` in `LANDMARK_NAMES` order.
Resampling filters are named (`RESAMPLE`): nearest, box, bilinear, hamming, bicubic, lanczos
(Pillow's, which anti-alias when shrinking).

  * `margin_crop` -- facenet's `align_dataset_mtcnn` recipe: grow the detected box by `margin`
    pixels in all (`margin / 2` per side), clip to the image, resize to `size x size` (the
    aspect ratio is not kept, as in facenet); `square=True` first grows the box to a square.
  * `haar_crop` -- the Haar square grown by a fraction of its side, clipped, resized, optionally
    grayscale (`[size, size, 1]`, ITU-R 601 luma).
  * `align_face` -- FFHQ-style alignment: an oriented square from the eye and mouth centres
    (the FFHQ construction, with the mouth centre taken from the two mouth corners), sampled
    with an affine warp, reflect-padded outside the image.
  * `resize_image` -- whole-image resize (centre-crop to square first when `center_crop`).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "RESAMPLE",
    "resample_filter",
    "expand_box",
    "clip_box",
    "crop_box",
    "margin_box",
    "haar_box",
    "box_affine",
    "square_box",
    "margin_crop",
    "haar_crop",
    "to_grayscale",
    "ffhq_quad",
    "align_face",
    "resize_image",
    "transform_points",
]

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resample_filter(name: str) -> Image.Resampling:
    """Pillow filter for a name in `RESAMPLE`; a clear error for anything else."""
    try:
        return RESAMPLE[name]
    except KeyError:
        raise ValueError(f"unknown resample filter {name!r}; expected one of "
                         f"{sorted(RESAMPLE)}") from None


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected a uint8 [H, W, 1|3] image, got {image.dtype} {image.shape}")
    return image


def _resize(image: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """uint8 `[h, w, C]` -> `[size[0], size[1], C]` with a named Pillow filter."""
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    out = np.asarray(pil.resize((size[1], size[0]), resample_filter(resample)))
    return out.reshape(size[0], size[1], image.shape[2])


def expand_box(box, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """`(x0 - left, y0 - top, x1 + right, y1 + bottom)` as float64 `[4]`."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    return np.array([x0 - left, y0 - top, x1 + right, y1 + bottom])


def square_box(box) -> np.ndarray:
    """The square of side `max(w, h)` with the same centre, float64 `[4]`."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def clip_box(box, height: int, width: int) -> np.ndarray:
    """Integer box clipped to the image: int64 `[4]` with `0 <= x0 < x1 <= width` (same for y).

    Coordinates are floored (start) and ceiled (end) so the crop covers the whole box.

    Raises:
      ValueError: when the box does not overlap the image.
    """
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    out = np.array([max(np.floor(x0), 0), max(np.floor(y0), 0),
                    min(np.ceil(x1), width), min(np.ceil(y1), height)], np.int64)
    if out[2] <= out[0] or out[3] <= out[1]:
        raise ValueError(f"box {tuple(float(v) for v in box)} lies outside the "
                         f"{width}x{height} image")
    return out


def crop_box(image: np.ndarray, box) -> np.ndarray:
    """The pixels of `clip_box(box)`: uint8 `[y1 - y0, x1 - x0, C]`."""
    x0, y0, x1, y1 = clip_box(box, image.shape[0], image.shape[1])
    return image[y0:y1, x0:x1]


def margin_box(box, height: int, width: int, *, margin: float = 50.0,
               square: bool = False) -> np.ndarray:
    """The clipped integer source box of `margin_crop` -> int64 `[4]`."""
    if square:
        box = square_box(box)
    grown = expand_box(box, margin / 2, margin / 2, margin / 2, margin / 2)
    return clip_box(grown, height, width)


def haar_box(box, height: int, width: int, *, margin: float = 0.0) -> np.ndarray:
    """The clipped integer source box of `haar_crop` -> int64 `[4]`."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    pad = margin * max(x1 - x0, y1 - y0)
    return clip_box(expand_box(box, pad, pad, pad, pad), height, width)


def box_affine(box, size: int) -> np.ndarray:
    """2x3 affine taking source pixel coordinates into a `size x size` resize of `box`."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])


def margin_crop(image: np.ndarray, box, *, margin: float = 50.0, size: int = 256,
                resample: str = "bilinear", square: bool = False) -> np.ndarray:
    """Facenet's MTCNN crop: box grown by `margin` pixels in all, clipped, resized.

    Args:
      image: uint8 `[H, W, C]`.
      box: `(x0, y0, x1, y1)` detected face.
      margin: pixels added to width and height (half on each side), before clipping.
      size: output side.
      resample: filter name (`RESAMPLE`).
      square: grow the box to a square about its centre before adding the margin.

    Returns:
      uint8 `[size, size, C]`.
    """
    image = _check_image(image)
    x0, y0, x1, y1 = margin_box(box, image.shape[0], image.shape[1], margin=margin, square=square)
    return _resize(image[y0:y1, x0:x1], (size, size), resample)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 `[H, W, 3]` RGB -> `[H, W, 1]` luma (ITU-R 601, OpenCV's rounding)."""
    image = _check_image(image)
    if image.shape[2] == 1:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]


def haar_crop(image: np.ndarray, box, *, size: int = 64, margin: float = 0.0,
              grayscale: bool = False, resample: str = "box") -> np.ndarray:
    """Crop of a (square) Haar box grown by `margin * side` per side, clipped, resized.

    Returns:
      uint8 `[size, size, 1]` if `grayscale` else `[size, size, C]`.
    """
    image = _check_image(image)
    x0, y0, x1, y1 = haar_box(box, image.shape[0], image.shape[1], margin=margin)
    out = _resize(image[y0:y1, x0:x1], (size, size), resample)
    return to_grayscale(out) if grayscale else out


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ oriented crop square from 5 landmarks -> float64 `[4, 2]` corners.

    Corners in the order top-left, bottom-left, bottom-right, top-right of the output. The
    construction follows FFHQ's: `x` is the eye-to-eye direction corrected by the perpendicular
    of eye-to-mouth, scaled to `max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`; the centre sits 10% of
    eye-to-mouth below the eye midpoint.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"expected landmarks [5, 2], got shape {lm.shape}")
    eye_avg = (lm[0] + lm[1]) / 2
    mouth_avg = (lm[3] + lm[4]) / 2
    eye_to_eye = lm[1] - lm[0]
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / max(np.hypot(*x), 1e-12)
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _quad_affine(quad: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine mapping quad corners (tl, bl, br) to output pixel corners."""
    src = quad[:3].astype(np.float32)
    dst = np.array([[0, 0], [0, size], [size, size]], np.float32)
    return cv2.getAffineTransform(src, dst)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Applies a 2x3 affine to `[N, 2]` points -> float32 `[N, 2]`."""
    points = np.asarray(points, np.float64)
    return (points @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def align_face(image: np.ndarray, landmarks: np.ndarray, *, size: int = 256,
               return_affine: bool = False):
    """FFHQ-style aligned crop from 5 landmarks.

    The quad is sampled in one affine warp (Lanczos when shrinking by more than 2x after a
    Pillow pre-shrink, bicubic otherwise); outside the image the content is mirrored.

    Returns:
      uint8 `[size, size, C]`, and the 2x3 affine (source -> output pixels) if `return_affine`.
    """
    image = _check_image(image)
    quad = ffhq_quad(landmarks)
    side = np.hypot(*(quad[3] - quad[0]))
    shrink = int(np.floor(side / size / 2))
    sx = sy = 1.0
    if shrink > 1:  # pre-shrink large sources so the warp does not alias
        h, w = image.shape[:2]
        new = (max(1, round(h / shrink)), max(1, round(w / shrink)))
        sx, sy = new[1] / w, new[0] / h
        image = _resize(image, new, "lanczos")
        quad = quad * np.array([sx, sy])
    affine = _quad_affine(quad, size)
    out = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT)
    out = out.reshape(size, size, image.shape[2])
    if not return_affine:
        return out
    full = affine.astype(np.float64) * np.array([[sx, sy, 1.0], [sx, sy, 1.0]])
    return out, full


def resize_image(image: np.ndarray, size: int, *, resample: str = "lanczos",
                 center_crop: bool = True) -> np.ndarray:
    """Whole image to `[size, size, C]`; non-square images are centre-cropped first (or
    squashed when `center_crop=False`)."""
    image = _check_image(image)
    h, w = image.shape[:2]
    if center_crop and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top:top + side, left:left + side]
    if image.shape[:2] == (size, size):
        return image
    return _resize(image, (size, size), resample)
