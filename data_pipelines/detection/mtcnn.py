"""MTCNN face detector (Zhang et al. 2016) in JAX/Flax with the original weights.

Three cascaded networks: P-Net scans an image pyramid and proposes boxes, R-Net and O-Net
re-score and refine crops of those boxes; O-Net also predicts 5 landmarks. Defaults follow the
common facenet / PyPI `mtcnn` setting: smallest face 20 px, pyramid factor 0.709, score
thresholds 0.6 / 0.7 / 0.7.

What runs where:
  * jitted (one compilation per image shape, reused for every image of that shape): the whole
    pyramid (area resampling of every level + P-Net), over a batch of same-sized images;
    crop-and-resize + R-Net and crop-and-resize + O-Net over all candidate boxes of a batch,
    padded to power-of-two buckets so that the number of compilations stays small.
  * NumPy: thresholding, non-maximum suppression and box bookkeeping (data-dependent sizes).

Conventions (those of the PyPI `mtcnn` 1.0.0 package, so that detections agree with it): pixel
values normalised as `(x - 127.5) / 128`; pyramid levels resampled with area averaging to
`int(size * scale)`; crops resampled bilinearly, zero (mid-grey) outside the image; NMS with IoU
over union (over the smaller box for the final stage) in its "suppressed by any higher-scoring
box" form (see `nms`).

Landmarks: by default (`mirror_landmarks`) O-Net also sees each kept face's crop mirrored
left-right and the landmarks are the mean of both passes (flipped back: `x -> 1 - x`, left and
right points swapped). Scores and boxes come from the plain pass only, so which faces are kept
and their boxes are exactly those of the single-pass reference algorithm. Against the official
human-annotated CelebA landmarks (held-out faces 004001-005000, `benchmarks/mtcnn_landmarks.py`)
this lowers the normalised mean error (NME, inter-ocular distance) from 0.0470 to 0.0454 mean and
0.0371 to 0.0360 median; facenet-pytorch 2.6.0 with the same weights: 0.0794 / 0.0715 (its crops
start at the truncated box corner while its landmarks are decoded from the untruncated one).

`MTCNN(recall="high")` (an explicit option; the default stays the reference-agreeing detector)
adds the faces found by verified second chances: proposals R-Net rejects, seen again mirrored
and antialiased; the proposals of the original MTCNN order (NMS before box regression); boxes
O-Net rejects, scored again where its own box regression puts them. Every reference face is
kept unchanged (see the class docstring and benchmarks/RESULTS.md).

Agreement with PyPI `mtcnn` 1.0.0 (TensorFlow), measured on the 4,061 images of
../shared/data/mtcnn_reference.json with `python -m data_pipelines.detection.agreement`: the same
number of faces on every image (4,068 faces, all matched); box IoU mean 0.977 (p5 0.962) on the
89x109 CelebA faces, where the reference's whole-pixel rounding alone accounts for most of it
(0.991 on 1024x1024 CelebA-HQ faces). Landmark difference from the reference: mean 0.028
inter-ocular distances on CelebA (0.018 on CelebA-HQ); with `mirror_landmarks=False` (the
reference's single pass) 0.020 (0.005). The detail that matters for the agreement: R-Net / O-Net
crops sample box coordinates scaled by `(n - 1) / n` (TensorFlow's `crop_and_resize` with boxes
normalised by the image size); removing that distortion moves landmarks by about half a pixel
and changes kept faces, and measured against the human landmarks it was no better.

Public API: `detect_faces(image)`, `detect_faces_batch(images)`, `MTCNN` (configurable
detector; its `recall` values in `RECALL_MODES`), `load_params()`, the Flax modules `PNet`,
`RNet`, `ONet`, and the helpers `pyramid_scales`, `area_resize`, `crop_and_resize`, `nms`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.detection.face import Face, as_rgb_uint8
from flaxgan import xla_cpu

__all__ = [
    "MTCNN",
    "RECALL_MODES",
    "PNet",
    "RNet",
    "ONet",
    "WEIGHTS_PATH",
    "load_params",
    "detect_faces",
    "detect_faces_batch",
    "pyramid_scales",
    "area_resize",
    "crop_and_resize",
    "nms",
]

WEIGHTS_PATH = pathlib.Path(__file__).with_name("mtcnn_weights.npz")

_CELL = 12  # P-Net receptive field, pixels
_STRIDE = 2  # P-Net output stride, pixels
_MIN_BUCKET = 16  # smallest padded batch of boxes for R-Net / O-Net


# ----------------------------------------------------------------------------------------------
# Networks.


class PReLU(nn.Module):
    """Parametric ReLU with one learned slope per channel (`alpha` broadcast over H and W)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, alpha.reshape(-1) * x)


def _conv(features: int, kernel: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), padding="VALID", name=name)


def _caffe_flatten(x: jax.Array) -> jax.Array:
    """`[N, H, W, C] -> [N, W*H*C]`: the original Caffe nets flatten with W before H."""
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net, fully convolutional: `[N, H, W, 3] -> (prob [N, h, w], reg [N, h, w, 4])`.

    `h = ceil((H - 2) / 2) - 4`; output cell `(i, j)` sees the 12x12 window at `(2j, 2i)`.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = PReLU(name="prelu1")(_conv(10, 3, "conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = PReLU(name="prelu2")(_conv(16, 3, "conv2")(x))
        x = PReLU(name="prelu3")(_conv(32, 3, "conv3")(x))
        reg = nn.Conv(4, (1, 1), name="bbox_reg")(x)
        logits = nn.Conv(2, (1, 1), name="face_prob")(x)
        return jax.nn.softmax(logits, axis=-1)[..., 1], reg


class RNet(nn.Module):
    """Refinement net: `[N, 24, 24, 3] -> (prob [N], reg [N, 4])`."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = PReLU(name="prelu1")(_conv(28, 3, "conv1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = PReLU(name="prelu2")(_conv(48, 3, "conv2")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        x = PReLU(name="prelu3")(_conv(64, 2, "conv3")(x))
        x = PReLU(name="prelu4")(nn.Dense(128, name="fc4")(_caffe_flatten(x)))
        reg = nn.Dense(4, name="bbox_reg")(x)
        logits = nn.Dense(2, name="face_prob")(x)
        return jax.nn.softmax(logits, axis=-1)[:, 1], reg


class ONet(nn.Module):
    """Output net: `[N, 48, 48, 3] -> (prob [N], reg [N, 4], landmarks [N, 10])`.

    `landmarks` are `x1..x5, y1..y5` as fractions of the input box.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = PReLU(name="prelu1")(_conv(32, 3, "conv1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = PReLU(name="prelu2")(_conv(64, 3, "conv2")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        x = PReLU(name="prelu3")(_conv(64, 3, "conv3")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = PReLU(name="prelu4")(_conv(128, 2, "conv4")(x))
        x = PReLU(name="prelu5")(nn.Dense(256, name="fc5")(_caffe_flatten(x)))
        reg = nn.Dense(4, name="bbox_reg")(x)
        landmarks = nn.Dense(10, name="landmarks")(x)
        logits = nn.Dense(2, name="face_prob")(x)
        return jax.nn.softmax(logits, axis=-1)[:, 1], reg, landmarks


_PNET, _RNET, _ONET = PNet(), RNet(), ONet()


@functools.cache
def load_params(path: str | pathlib.Path = WEIGHTS_PATH) -> dict:
    """Reads the P/R/O-Net weights (`pnet/conv1/kernel`, ... as in the npz) into Flax params.

    Returns:
      `{"pnet": params, "rnet": params, "onet": params}`, each `{"params": {...}}` for `apply`.
    """
    tree: dict = {}
    with np.load(path) as npz:
        for key in npz.files:
            net, layer, name = key.split("/")
            value = np.asarray(npz[key], np.float32)
            if name == "alpha":
                value = value.reshape(-1)
            tree.setdefault(net, {"params": {}})["params"].setdefault(layer, {})[name] = value
    missing = {"pnet", "rnet", "onet"} - set(tree)
    if missing:
        raise ValueError(f"{path}: expected MTCNN weights for pnet, rnet, onet; missing {missing}")
    return jax.tree.map(jnp.asarray, tree)


# ----------------------------------------------------------------------------------------------
# Resampling.


def pyramid_scales(height: int, width: int, min_face_size: float = 20.0,
                   factor: float = 0.709) -> tuple[float, ...]:
    """Scales `m * factor**k`, `m = 12 / min_face_size`, while the short side stays >= 12 px."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"expected a pyramid factor in (0, 1), got {factor}")
    if min_face_size <= 0:
        raise ValueError(f"expected a positive min_face_size, got {min_face_size}")
    scale = _CELL / min_face_size
    short = min(height, width)
    scales = []
    while short * scale >= _CELL:
        scales.append(scale)
        scale *= factor
    return tuple(scales)


def _level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return int(height * scale), int(width * scale)


@functools.cache
def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaging taps: output `i` averages the input interval `[i s, (i + 1) s)`, `s = in/out`.

    Returns:
      `(index [out, K] int32, weight [out, K] float32)`; rows sum to 1, unused taps have weight 0.
    """
    s = in_size / out_size
    lo = np.arange(out_size) * s
    hi = lo + s
    first = np.floor(lo).astype(np.int64)
    taps = int(np.max(np.ceil(hi) - first))
    index = first[:, None] + np.arange(taps)[None, :]
    overlap = np.minimum(index + 1, hi[:, None]) - np.maximum(index, lo[:, None])
    weight = np.clip(overlap, 0.0, None) / s
    index = np.clip(index, 0, in_size - 1)
    return index.astype(np.int32), weight.astype(np.float32)


def area_resize(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Area (box-average) resampling of `[N, H, W, C]` to `[N, h, w, C]`, separable, exact.

    Each output pixel is the mean of the input over its footprint, fractional pixels weighted
    by coverage (TensorFlow's `ResizeArea`).
    """
    _, height, width, _ = images.shape
    index_y, weight_y = _area_taps(height, size[0])
    index_x, weight_x = _area_taps(width, size[1])
    rows = jnp.einsum("nokwc,ok->nowc", images[:, index_y], weight_y)
    return jnp.einsum("nhokc,ok->nhoc", rows[:, :, index_x], weight_x)


def crop_and_resize(images: jax.Array, boxes: jax.Array, image_index: jax.Array,
                    size: int, supersample: int = 1) -> jax.Array:
    """Bilinear crops of boxes, resampled to `size x size`; zero outside the image.

    Args:
      images: `[N, H, W, C]`.
      boxes: `[B, 4]` `(x0, y0, x1, y1)` in pixels; the `size` samples per axis run from
        `x0` to `x1` inclusive (corners aligned).
      image_index: `[B]` int, which image each box is cut from.
      size: output side.
      supersample: `k`; each output pixel is the mean of `k x k` bilinear samples spread evenly
        over its footprint (one sample spacing wide, centred on the pixel's own sample point),
        an approximation of area resampling that does not alias when the box is much larger
        than `size`. 1: the plain bilinear crop (point sampling).

    Returns:
      `[B, size, size, C]`.
    """
    _, height, width, _ = images.shape
    k = int(supersample)
    if k < 1:
        raise ValueError(f"expected supersample >= 1, got {supersample}")
    # Sample positions in units of the output grid: pixel i's k sub-samples sit at
    # i + (j + 0.5) / k - 0.5, j < k (k = 1: exactly i).
    sub = (jnp.arange(k, dtype=jnp.float32) + 0.5) / k - 0.5
    t = (jnp.arange(size, dtype=jnp.float32)[:, None] + sub[None, :]).reshape(-1) / (size - 1)
    ys = boxes[:, 1:2] + t[None] * (boxes[:, 3:4] - boxes[:, 1:2])  # [B, size * k]
    xs = boxes[:, 0:1] + t[None] * (boxes[:, 2:3] - boxes[:, 0:1])

    def taps(coords: jax.Array, limit: int) -> tuple[jax.Array, ...]:
        lo = jnp.floor(coords)
        frac = coords - lo
        lo = lo.astype(jnp.int32)
        inside = (coords >= 0) & (coords <= limit - 1)
        return jnp.clip(lo, 0, limit - 1), jnp.clip(lo + 1, 0, limit - 1), frac, inside

    y0, y1, fy, in_y = taps(ys, height)
    x0, x1, fx, in_x = taps(xs, width)
    n = image_index[:, None, None]

    def gather(yi: jax.Array, xi: jax.Array) -> jax.Array:
        return images[n, yi[:, :, None], xi[:, None, :]]  # [B, size * k, size * k, C]

    fy = fy[:, :, None, None]
    fx = fx[:, None, :, None]
    top = gather(y0, x0) * (1 - fx) + gather(y0, x1) * fx
    bottom = gather(y1, x0) * (1 - fx) + gather(y1, x1) * fx
    out = top * (1 - fy) + bottom * fy
    inside = (in_y[:, :, None] & in_x[:, None, :])[..., None]
    out = jnp.where(inside, out, 0.0)
    if k > 1:
        out = out.reshape(out.shape[0], size, k, size, k, out.shape[-1]).mean(axis=(2, 4))
    return out


# ----------------------------------------------------------------------------------------------
# Jitted stages.


def _normalize(images: jax.Array) -> jax.Array:
    return (images.astype(jnp.float32) - 127.5) / 128.0


@functools.partial(xla_cpu.jit, static_argnames=("sizes",))
def _pnet_pyramid(params: dict, images: jax.Array,
                  sizes: tuple[tuple[int, int], ...]) -> list[tuple[jax.Array, jax.Array]]:
    """uint8 `[N, H, W, 3]` -> per level `(prob [N, h, w], reg [N, h, w, 4])`."""
    x = _normalize(images)
    return [_PNET.apply(params, area_resize(x, size)) for size in sizes]


@functools.partial(xla_cpu.jit, static_argnames=("size", "mirror", "supersample"))
def _refine(params: dict, images: jax.Array, boxes: jax.Array, image_index: jax.Array,
            size: int, mirror: bool = False, supersample: int = 1) -> tuple[jax.Array, ...]:
    """Crops `[B, size, size, 3]` of uint8 `images` scored by R-Net (24) or O-Net (48).

    `mirror`: the crops are flipped left-right before the network sees them.
    `supersample`: see `crop_and_resize` (1: the reference's bilinear crop).
    """
    _, height, width, _ = images.shape
    # The reference normalises boxes by the image size and samples them on the pixel grid
    # [0, size - 1] (TensorFlow's crop_and_resize), i.e. pixel coordinates shrink by (n - 1) / n.
    shrink = jnp.array([(width - 1) / width, (height - 1) / height] * 2, jnp.float32)
    crops = crop_and_resize(_normalize(images), boxes * shrink, image_index, size, supersample)
    if mirror:
        crops = crops[:, :, ::-1]
    return (_RNET if size == 24 else _ONET).apply(params, crops)


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << (n - 1).bit_length())


def _run_refine(params: dict, images: jax.Array, boxes: np.ndarray, image_index: np.ndarray,
                size: int, mirror: bool = False, supersample: int = 1) -> tuple[np.ndarray, ...]:
    """`_refine` on boxes padded to a power-of-two bucket; outputs cut back to `len(boxes)`."""
    n = len(boxes)
    padded = _bucket(n)
    boxes_p = np.zeros((padded, 4), np.float32)
    boxes_p[:n] = boxes
    index_p = np.zeros((padded,), np.int32)
    index_p[:n] = image_index
    outputs = _refine(params, images, jnp.asarray(boxes_p), jnp.asarray(index_p), size=size,
                      mirror=mirror, supersample=supersample)
    return tuple(np.asarray(o)[:n] for o in outputs)


# ----------------------------------------------------------------------------------------------
# Box bookkeeping (NumPy).


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Non-maximum suppression; returns the kept indices, highest score first.

    A box is dropped when any higher-scoring box overlaps it by more than `threshold`, whether
    or not that box was itself dropped (the PyPI `mtcnn` rule: one matrix comparison, no loop).

    Args:
      boxes: `[N, 4]` `(x0, y0, x1, y1)`.
      scores: `[N]`.
      threshold: overlap above which the lower-scoring box goes.
      mode: `"union"` (IoU) or `"min"` (intersection over the smaller area).
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    suppressed = np.triu(_overlap(b, b, mode) > threshold, k=1).any(axis=0)
    return order[~suppressed]


def _overlap(a: np.ndarray, b: np.ndarray, mode: str = "union") -> np.ndarray:
    """`[len(a), len(b)]` overlap of `(x0, y0, x1, y1)` boxes: IoU (`"union"`) or intersection
    over the smaller area (`"min"`)."""
    if mode not in ("union", "min"):
        raise ValueError(f"expected nms mode 'union' or 'min', got {mode!r}")
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    if mode == "union":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    return inter / np.maximum(denom, 1e-12)


def _nms_per_image(boxes: np.ndarray, scores: np.ndarray, image_index: np.ndarray,
                   threshold: float, mode: str = "union") -> np.ndarray:
    keep = [np.flatnonzero(image_index == i)[nms(boxes[image_index == i],
                                                  scores[image_index == i], threshold, mode)]
            for i in np.unique(image_index)]
    return np.concatenate(keep) if keep else np.zeros((0,), np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grows each box to a square of side `max(w, h)` about its centre."""
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    x0 = (boxes[:, 0] + boxes[:, 2] - size) / 2
    y0 = (boxes[:, 1] + boxes[:, 3] - size) / 2
    return np.stack([x0, y0, x0 + size, y0 + size], axis=1)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Applies box offsets `reg [N, 4]`, in units of the (inclusive) box side."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * np.stack([w, h, w, h], axis=1)


# Landmark order after a left-right flip (left eye <-> right eye, mouth corners swapped).
_MIRRORED_LANDMARKS = np.array([1, 0, 2, 4, 3])


def _unmirror_landmarks(marks: np.ndarray) -> np.ndarray:
    """O-Net landmarks `[N, 10]` (`x1..x5, y1..y5`) of mirrored crops -> the unflipped crops'.

    The network places `x` as a fraction of the crop measured from its left edge, so mirroring
    about the crop centre maps `x -> 1 - x` (checked without labels: over the 3,528 boxes O-Net
    scores on CelebA 001001-004000, `x + x_mirrored` has mean 1.002 and median 1.001).
    """
    m = marks.reshape(-1, 2, 5)[:, :, _MIRRORED_LANDMARKS].copy()
    m[:, 0] = 1.0 - m[:, 0]
    return m.reshape(-1, 10)


def _pnet_cells(prob: np.ndarray, reg: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """P-Net cells above `threshold`, in the pixels of their pyramid level.

    Returns:
      `(cells [K, 4], offsets [K, 4], scores [K], image [K])`: each cell's 12 x 12 window
      `(x0, y0, x1, y1)` and its box regression (the regressed box is `cells + offsets`).
    """
    n, yy, xx = np.nonzero(prob > threshold)
    start = np.stack([xx, yy], axis=1) * _STRIDE + 1.0
    cells = np.concatenate([start, start + _CELL - 1], axis=1)
    return cells, reg[n, yy, xx] * (_CELL - 1), prob[n, yy, xx], n


# ----------------------------------------------------------------------------------------------
# The detector.


RECALL_MODES = ("reference", "high")

# `recall="high"`: the extra R-Net views of a rejected P-Net proposal, `(mirror, supersample)`:
# the mirrored crop, the antialiased crop (4 x 4 bilinear samples averaged per pixel: on the
# ~20-90 px CelebA boxes that covers every source pixel, so the 24 px crop is close to an area
# average) and both. Chosen on CelebA 001001-004000: as a stand-in for faces the cascade
# misses, the rejected proposals alone recover 22 % of the faces found there with the mirrored
# view and 27 % with all three (646 / 794 of 2,994: box on the face, landmark NME < 0.1; after
# the O-Net check, no false detection either way).
_SECOND_CHANCE_VIEWS = ((True, 1), (False, 4), (True, 4))


@dataclasses.dataclass(frozen=True)
class _Stage:
    """Detections of a batch before the conversion to `Face`s (NumPy arrays, one row each)."""

    boxes: np.ndarray  # [K, 4] (x0, y0, x1, y1), regressed, not clipped
    scores: np.ndarray  # [K] O-Net face probability
    landmarks: np.ndarray  # [K, 5, 2] pixels
    index: np.ndarray  # [K] image of the batch

    @classmethod
    def empty(cls) -> _Stage:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)), np.zeros((0,), np.int64))

    def take(self, rows: np.ndarray) -> _Stage:
        return _Stage(self.boxes[rows], self.scores[rows], self.landmarks[rows], self.index[rows])


@dataclasses.dataclass(frozen=True)
class MTCNN:
    """A configured MTCNN detector; `detect(image)` / `detect_batch(images)`.

    Attributes:
      min_face_size: smallest face side searched for, pixels.
      scale_factor: ratio between pyramid levels.
      thresholds: P-Net, R-Net, O-Net face-probability thresholds.
      nms_thresholds: P-Net within one level, P-Net across levels, R-Net, O-Net (min-area).
      mirror_landmarks: landmarks are the mean of O-Net's on the face crop and on its mirror
        image (flipped back); scores and boxes, hence which faces are kept, are unchanged.
        False: the single-pass landmarks of the reference detectors.
      recall: `"reference"` (default): the reference detector's decisions (PyPI `mtcnn` 1.0.0;
        which faces are kept and their boxes). `"high"`: the same faces, plus those found by
        second chances for what the cascade loses: (a) the P-Net proposals R-Net rejects,
        re-scored by R-Net on their mirrored crop, their antialiased crop and both
        (`_SECOND_CHANCE_VIEWS`); (b) the P-Net proposals in the original MTCNN order (NMS on
        the cells' windows before their box regression, and R-Net's NMS before its regression:
        the order of Zhang et al.'s code, with the reference's NMS rule; other placements of
        each face survive), each on its best R-Net view. Those above the R-Net threshold go to
        O-Net, which scores each at its box and, where it fails there, at the box its own
        regression calibrated; (c) so are the boxes the reference's O-Net rejects (the
        reference scores a box before calibrating it, and O-Net's score depends on where the
        box sits: an off-centre box can lose a face). A second-chance face must be a face to
        O-Net on its crop *and* on the crop's mirror image (both above the O-Net threshold),
        O-Net must place the same landmarks on both (mean distance below `rescue_tolerance` of
        the box side), and its box must not be more than one pyramid step below
        `min_face_size`: on faces the two passes agree, on the hair, hands, clothing and
        animals O-Net sometimes accepts they mostly do not. Second chances look only where the
        reference found no face: an O-Net candidate or a face overlapping a reference face by
        more than the final NMS threshold (min-area) is dropped, so every reference face keeps
        its box, score and landmarks. Chosen on CelebA 001001-004000 and
        on degraded copies of 001001-001600 (downscaled, JPEG-compressed, dimmed with noise,
        blurred, rotated); figures in benchmarks/RESULTS.md (MTCNN against human landmarks).
      rescue_tolerance: `recall="high"` only: the largest mean landmark distance between the
        plain and mirrored O-Net passes of a second-chance face, as a fraction of its box side
        (0.05. On those development images, among the boxes where both passes score a face:
        on the annotated faces median 0.012 and 98.6 % below 0.05; elsewhere (hair, hands,
        textures, the animals of ../shared/data/nonfaces) median 0.053-0.069 and 44 % below.
        The 0.03 used before lost faces on the degraded copies, whose 90th percentile is 0.031.)
      weights: path of the `.npz` weights.
    """

    min_face_size: float = 20.0
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)
    mirror_landmarks: bool = True
    recall: str = "reference"
    rescue_tolerance: float = 0.05
    weights: str | pathlib.Path = WEIGHTS_PATH

    def __post_init__(self):
        if self.recall not in RECALL_MODES:
            raise ValueError(f"expected recall in {RECALL_MODES}, got {self.recall!r}")
        if not self.rescue_tolerance > 0:
            raise ValueError(f"expected a positive rescue_tolerance, got {self.rescue_tolerance}")

    @property
    def params(self) -> dict:
        return load_params(self.weights)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one uint8 `[H, W, 3]` RGB image, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each of several uint8 RGB images; same-sized images share one network pass.

        Returns:
          One list per image, in input order, each sorted by score (highest first).
        """
        images = [as_rgb_uint8(im) for im in images]
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        for members in groups.values():
            stack = np.stack([images[i] for i in members])
            for i, faces in zip(members, self._detect_stack(stack), strict=True):
                results[i] = faces
        return results

    def _detect_stack(self, images: np.ndarray) -> list[list[Face]]:
        """Detection on uint8 `[N, H, W, 3]` images of one size."""
        params = self.params
        num, height, width, _ = images.shape
        t_r = self.thresholds[1]
        empty: list[list[Face]] = [[] for _ in range(num)]
        scales = pyramid_scales(height, width, self.min_face_size, self.scale_factor)
        if not scales:
            return empty
        device_images = jnp.asarray(images)
        sizes = tuple(_level_size(height, width, s) for s in scales)
        levels = [(np.asarray(prob), np.asarray(reg)) for prob, reg in
                  _pnet_pyramid(params["pnet"], device_images, sizes=sizes)]

        # Stage 1: P-Net proposals (NMS within each level, then across levels).
        boxes, index = self._proposals(levels, scales)
        if not len(boxes):
            return empty
        # Stage 2: R-Net re-scores and refines 24x24 crops.
        scores, reg = _run_refine(params["rnet"], device_images, boxes, index, 24)
        ok = scores > t_r
        onet_boxes, onet_index = self._rnet_survivors(boxes[ok], scores[ok], reg[ok], index[ok])
        # Stage 3: O-Net re-scores, refines and places landmarks on 48x48 crops.
        accepted, missed = self._onet(device_images, onet_boxes, onet_index)
        found = self._final_nms(accepted)
        if self.recall == "high":
            rescued = self._second_chances(device_images, levels, scales,
                                           (boxes, scores, reg, index), missed, found)
            found = _merge(found, rescued, self.nms_thresholds[3])

        limit = np.array([width - 1, height - 1] * 2, np.float64)
        results: list[list[Face]] = [[] for _ in range(num)]
        for box, score, marks, i in zip(found.boxes, found.scores, found.landmarks, found.index,
                                        strict=True):
            results[i].append(Face(box=tuple(float(v) for v in np.clip(box, 0.0, limit)),
                                   score=float(score), landmarks=marks.astype(np.float32)))
        for faces in results:
            faces.sort(key=lambda f: -f.score)
        return results

    def _proposals(self, levels: Sequence[tuple[np.ndarray, np.ndarray]], scales: Sequence[float],
                   cells_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """P-Net outputs per pyramid level -> square proposals `(boxes [K, 4], image [K])`.

        NMS within each level, then across levels, on the regressed boxes (the reference
        detector's order), or with `cells_first` on the cells' own windows before their
        regression (the order of Zhang et al.'s code and facenet-pytorch: the regressed boxes of
        one face pile onto each other and suppress one another, the windows lie on a stride-2
        grid, so other placements of each face survive, and more of them: 7,629 proposals
        against 6,436 on CelebA 001001-001600).
        """
        t_p = self.thresholds[0]
        nms_level, nms_pyramid = self.nms_thresholds[:2]
        parts = []
        for (prob, reg), scale in zip(levels, scales, strict=True):
            cells, offsets, scores, index = _pnet_cells(prob, reg, t_p)
            boxes = (cells + offsets) / scale
            compared = cells / scale if cells_first else boxes  # what the NMS compares
            keep = _nms_per_image(compared, scores, index, nms_level)
            parts.append((compared[keep], boxes[keep], scores[keep], index[keep]))
        compared, boxes, scores, index = (np.concatenate(p) for p in zip(*parts, strict=True))
        keep = _nms_per_image(compared, scores, index, nms_pyramid)
        return _square(boxes[keep]), index[keep]

    def _second_chances(self, images: jax.Array, levels: Sequence[tuple[np.ndarray, np.ndarray]],
                        scales: Sequence[float],
                        proposals: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                        missed: tuple[np.ndarray, np.ndarray], found: _Stage) -> _Stage:
        """`recall="high"`: the faces the reference cascade loses, verified (see the class).

        Args:
          levels, scales: the P-Net outputs per pyramid level, and the levels' scales.
          proposals: `(boxes, scores, reg, index)`: the reference proposals and R-Net's plain
            score and regression of each.
          missed: `(boxes, index)` of the boxes O-Net rejected, at its own calibration.
          found: the reference's faces; O-Net candidates on them (overlapping one by more than
            the final NMS threshold) are not scored again.

        Returns:
          The verified faces after the final NMS (not yet merged with the reference's).
        """
        params, t_r = self.params, self.thresholds[1]
        boxes, plain, reg, index = proposals
        views = self._best_rnet_view(images, boxes, index)
        # (a) proposals R-Net rejected, re-scored on other views of their crop;
        again = (plain <= t_r) & (views > t_r)
        a_boxes, a_index = self._rnet_survivors(boxes[again], views[again], reg[again],
                                                index[again])
        # (b) the proposals in the original MTCNN order, each on its best view (most are
        # reference proposals too, ~83 % on CelebA: their R-Net outputs are reused);
        known = {(i, box.tobytes()): k
                 for k, (box, i) in enumerate(zip(boxes, index, strict=True))}
        o_boxes, o_index = self._proposals(levels, scales, cells_first=True)
        rows = np.array([known.get((i, box.tobytes()), -1)
                         for box, i in zip(o_boxes, o_index, strict=True)], np.int64)
        new = rows < 0
        o_scores = np.maximum(plain, views)[rows]
        o_reg = reg[rows]
        if new.any():
            fresh_scores, o_reg[new] = _run_refine(params["rnet"], images, o_boxes[new],
                                                   o_index[new], 24)
            fresh_views = self._best_rnet_view(images, o_boxes[new], o_index[new])
            o_scores[new] = np.maximum(fresh_scores, fresh_views)
        ok = o_scores > t_r
        b_boxes, b_index = self._rnet_survivors(o_boxes[ok], o_scores[ok], o_reg[ok],
                                                o_index[ok], nms_first=True)
        # O-Net at each candidate's box, then where its own regression puts the box, with (c)
        # the reference's O-Net rejections there; only where the reference found no face.
        boxes, index = self._unclaimed(np.concatenate([a_boxes, b_boxes]),
                                       np.concatenate([a_index, b_index]), found)
        rescued, (boxes, index) = self._onet(images, boxes, index, verify=True)
        boxes, index = self._unclaimed(np.concatenate([boxes, missed[0]]),
                                       np.concatenate([index, missed[1]]), found)
        relooked, _ = self._onet(images, boxes, index, verify=True)
        faces = _concat(rescued, relooked)
        # Boxes more than one pyramid step below the smallest face searched for are regression
        # artefacts of larger windows (on CelebA, 10-12 px patches of clothing and background).
        side = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0],
                          faces.boxes[:, 3] - faces.boxes[:, 1])
        faces = faces.take(np.flatnonzero(side >= self.min_face_size * self.scale_factor))
        return self._final_nms(faces)

    def _unclaimed(self, boxes: np.ndarray, index: np.ndarray,
                   found: _Stage) -> tuple[np.ndarray, np.ndarray]:
        """The boxes overlapping no face of `found` by more than the final NMS threshold."""
        free = ~_claimed(boxes, index, found, self.nms_thresholds[3])
        return boxes[free], index[free]

    def _best_rnet_view(self, images: jax.Array, boxes: np.ndarray,
                       index: np.ndarray) -> np.ndarray:
        """R-Net's best score over the extra views (`_SECOND_CHANCE_VIEWS`) of each box."""
        best = np.zeros((len(boxes),), np.float32)
        if not len(boxes):
            return best
        for mirror, supersample in _SECOND_CHANCE_VIEWS:
            scores, _ = _run_refine(self.params["rnet"], images, boxes, index, 24, mirror=mirror,
                                    supersample=supersample)
            best = np.maximum(best, scores)
        return best

    def _rnet_survivors(self, boxes: np.ndarray, scores: np.ndarray, reg: np.ndarray,
                        index: np.ndarray,
                        nms_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Boxes R-Net passed -> O-Net's boxes: R-Net's regression and NMS (NMS first with
        `nms_first`, the original MTCNN order), squared."""
        regressed = _regress(boxes, reg)
        keep = _nms_per_image(boxes if nms_first else regressed, scores, index,
                              self.nms_thresholds[2])
        return _square(regressed[keep]), index[keep]

    def _onet(self, images: jax.Array, boxes: np.ndarray, index: np.ndarray,
              verify: bool = False) -> tuple[_Stage, tuple[np.ndarray, np.ndarray]]:
        """O-Net on square `boxes` of the batch `images` (device).

        Args:
          verify: a face must also be a face to O-Net on the crop's mirror image and have the
            same landmarks there (mean distance < `rescue_tolerance` box sides): the second
            chances of `recall="high"`.

        Returns:
          `(accepted, (boxes, index))`: the faces O-Net accepts (regressed boxes, landmarks;
          before the final NMS), and the boxes it does not, moved to where O-Net's own
          regression puts them (squared), for `recall="high"`'s second look.
        """
        params = self.params
        t_o = self.thresholds[2]
        if not len(boxes):
            return _Stage.empty(), (np.zeros((0, 4)), np.zeros((0,), np.int64))
        scores, reg, marks = _run_refine(params["onet"], images, boxes, index, 48)
        ok = scores > t_o
        mirrored = marks
        if (self.mirror_landmarks or verify) and ok.any():
            rows = np.flatnonzero(ok)
            mirror_scores, _, mirror_marks = _run_refine(params["onet"], images, boxes[rows],
                                                         index[rows], 48, mirror=True)
            mirrored = marks.copy()
            mirrored[rows] = _unmirror_landmarks(mirror_marks)
            if verify:
                # Landmarks are fractions of the square box: distances in box sides.
                gap = np.hypot(*(marks[rows] - mirrored[rows]).reshape(-1, 2, 5)
                               .transpose(1, 0, 2)).mean(axis=1)
                ok[rows] = (mirror_scores > t_o) & (gap < self.rescue_tolerance)
        rejected = (_square(_regress(boxes[~ok], reg[~ok])), index[~ok])
        if self.mirror_landmarks:
            marks = (marks + mirrored) / 2
        boxes, scores, reg, marks, index = boxes[ok], scores[ok], reg[ok], marks[ok], index[ok]
        side = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
        landmarks = marks.reshape(-1, 2, 5).transpose(0, 2, 1) * side[:, None] \
            + boxes[:, None, :2] - 1
        return _Stage(_regress(boxes, reg), scores, landmarks, index), rejected

    def _final_nms(self, stage: _Stage) -> _Stage:
        """The last NMS (intersection over the smaller box) within each image."""
        keep = _nms_per_image(stage.boxes, stage.scores, stage.index, self.nms_thresholds[3],
                              mode="min")
        return stage.take(keep)


def _concat(a: _Stage, b: _Stage) -> _Stage:
    return _Stage(*(np.concatenate([x, y]) for x, y in
                    zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True)))


def _claimed(boxes: np.ndarray, index: np.ndarray, found: _Stage, threshold: float) -> np.ndarray:
    """`[len(boxes)]` bool: the box overlaps a face of `found` in its image by more than
    `threshold` (intersection over the smaller box, as the final NMS)."""
    clash = np.zeros((len(boxes),), bool)
    for i in np.unique(index):
        mine, theirs = index == i, found.index == i
        if theirs.any():
            clash[mine] = (_overlap(boxes[mine], found.boxes[theirs], "min")
                           > threshold).any(axis=1)
    return clash


def _merge(found: _Stage, rescued: _Stage, threshold: float) -> _Stage:
    """`found` plus the `rescued` faces that overlap no face of `found` in their image by more
    than `threshold` (`_claimed`): the final NMS with every `found` face ranked above every
    rescued one, so `found` is kept whole."""
    clash = _claimed(rescued.boxes, rescued.index, found, threshold)
    return _concat(found, rescued.take(np.flatnonzero(~clash)))


@functools.cache
def _default_detector() -> MTCNN:
    return MTCNN()


def detect_faces(image: np.ndarray) -> list[Face]:
    """Faces in a uint8 `[H, W, 3]` RGB image with the default MTCNN, highest score first."""
    return _default_detector().detect(image)


def detect_faces_batch(images: Sequence[np.ndarray]) -> list[list[Face]]:
    """`detect_faces` for several images; same-sized images share the network passes."""
    return _default_detector().detect_batch(images)
