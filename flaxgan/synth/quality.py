"""Per-image quality scores of generated faces, and the artifact filters on them.

Scores (float32 `[N]` each, NaN = not computed):

  `std`           pixel standard deviation (uint8 scale): a blank or collapsed image has ~0;
  `face_score`    the best MTCNN face's probability (NaN: no face found). Images smaller than
                  `DETECT_SIZE` are resized to it first: MTCNN's smallest face is 20 px and a
                  generated face fills its frame;
  `landmarks_ok`  1 when that face's 5 landmarks are plausible (`landmark_sanity`), else 0;
  `d_score`       the discriminator's logit (higher = more real to D), when D is available;
  `realism`       the realism score of Kynkäänniemi et al. (2019) against real features
                  (`realism_scores`), when a real reference is given.

Filters (`decide`): each image gets the first reason that applies, in `REASONS` order —
`flat`, `no_face`, `low_face_score`, `bad_landmarks`, `low_d_score`, `low_realism` — or
`kept`. Thresholds are `Thresholds`; a score that was not computed never drops an image.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import convert, edit, xla_cpu
from flaxgan.convert import export as export_lib
from flaxgan.errors import InvalidArgument
from flaxgan.metrics import pr
from flaxgan.models import build_discriminator

__all__ = [
    "DETECT_SIZE",
    "Discriminator",
    "REASONS",
    "SCORES",
    "Thresholds",
    "best_faces",
    "count_reasons",
    "d_scores",
    "decide",
    "landmark_sanity",
    "load_discriminator",
    "pixel_std",
    "realism_radii",
    "realism_scores",
]

REASONS = ("kept", "flat", "no_face", "low_face_score", "bad_landmarks", "low_d_score",
           "low_realism")
SCORES = ("std", "face_score", "landmarks_ok", "d_score", "realism")
DETECT_SIZE = edit.YAW_SIZE  # 64: the side MTCNN sees small generated faces at
REALISM_K = 3  # k of the k-NN radii (the paper's and the official precision/recall's)

Detector = Callable[[list[np.ndarray]], list[list[Any]]]


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Artifact-filter thresholds (`decide`).

    Attributes:
      min_std: images whose pixel std (0-255) is below are `flat` (blank, collapsed).
      require_face: drop images where MTCNN finds no face (`no_face`).
      min_face_score: drop faces whose MTCNN probability is below (`low_face_score`).
      check_landmarks: drop faces whose landmarks are implausible (`bad_landmarks`).
      min_d_score: drop images D scores below (None: no D filter).
      min_realism: drop images of realism score below (None: none); 1 is the edge of the
        real manifold estimate (the paper's precision criterion).
    """

    min_std: float = 2.0
    require_face: bool = True
    min_face_score: float = 0.9
    check_landmarks: bool = True
    min_d_score: float | None = None
    min_realism: float | None = None


# ----------------------------------------------------------------------------- scores


def pixel_std(images: np.ndarray) -> np.ndarray:
    """uint8 `[N, H, W, C]` -> float32 `[N]` standard deviation of all pixel values."""
    x = np.asarray(images, np.float32)
    return x.reshape(len(x), -1).std(axis=1).astype(np.float32)


def best_faces(images: np.ndarray, detector: Detector, size: int = DETECT_SIZE
               ) -> tuple[np.ndarray, np.ndarray]:
    """The highest-scoring face of each image.

    Args:
      images: uint8 `[N, H, W, 3]`; those smaller than `size` are resized (bicubic) to `size`²
        for the detector.
      detector: images -> faces per image (`mtcnn.MTCNN().detect_batch`).
      size: see `images`.
    Returns:
      `(score [N], landmarks [N, 5, 2])` float32, landmarks `(x, y)` in the input image's
      pixels; NaN where no face (or no landmarks) was found.
    """
    from data_pipelines import crop

    images = np.asarray(images)
    side = images.shape[1]
    scale = side / size if side < size else 1.0
    seen = [crop.resize_image(im, size, resample="bicubic") if side < size else im
            for im in images]
    score = np.full(len(images), np.nan, np.float32)
    marks = np.full((len(images), 5, 2), np.nan, np.float32)
    for i, faces in enumerate(detector(seen) if len(seen) else []):
        if faces:
            best = max(faces, key=lambda f: f.score)
            score[i] = best.score
            if best.landmarks is not None:
                marks[i] = np.asarray(best.landmarks, np.float32) * scale
    return score, marks


def landmark_sanity(landmarks: np.ndarray, side: int, max_yaw: float = 0.6) -> np.ndarray:
    """Whether 5-point landmarks `[N, 5, 2]` (left eye, right eye, nose, mouth left, mouth
    right; `(x, y)` pixels of a `side`² image) make a plausible upright face -> bool `[N]`.

    A detector can fire on texture and still place points; on a face crop the points must be
    finite and inside the image, the eyes and the mouth corners left-to-right, the nose below
    the eyes and the mouth below the nose, the inter-ocular distance 10%-60% of the side
    (CelebA / FFHQ crops: about 25-35%), and the yaw proxy `edit.yaw_from_landmarks` (the
    nose's offset along the eye line, in inter-ocular distances) within `max_yaw`.
    """
    p = np.asarray(landmarks, np.float64)
    eye_l, eye_r, nose, mouth_l, mouth_r = (p[:, i] for i in range(5))
    with np.errstate(invalid="ignore"):
        inside = np.all(np.isfinite(p) & (p >= 0) & (p <= side), axis=(1, 2))
        ordered = (eye_l[:, 0] < eye_r[:, 0]) & (mouth_l[:, 0] < mouth_r[:, 0])
        eyes_y = (eye_l[:, 1] + eye_r[:, 1]) / 2
        vertical = (nose[:, 1] > eyes_y) & ((mouth_l[:, 1] + mouth_r[:, 1]) / 2 > nose[:, 1])
        iod = np.linalg.norm(eye_r - eye_l, axis=1) / side
        yaw = np.abs(edit.yaw_from_landmarks(p))
        return inside & ordered & vertical & (iod >= 0.1) & (iod <= 0.6) & (yaw <= max_yaw)


def realism_radii(real_features: np.ndarray, k: int = REALISM_K) -> np.ndarray:
    """Radii of the real manifold for `realism_scores`, float32 `[M]`.

    Each real feature's distance to its k-th nearest other real feature (the improved
    precision/recall manifold, `metrics.pr.knn_radii`), with the radii above the median set
    to 0: Kynkäänniemi et al. (2019, sec. 5) discard the half of the hyperspheres with the
    largest radii so that outliers of the real set, whose large balls cover much of the
    space, cannot make an unrealistic image score high.
    """
    radii = pr.knn_radii(np.asarray(real_features, np.float32), k, half=False)
    return np.where(radii > np.median(radii), 0.0, radii).astype(np.float32)


@xla_cpu.jit
def _realism(gen: jax.Array, real: jax.Array, radii: jax.Array) -> jax.Array:
    d = pr.pairwise_distances(gen, real)
    return jnp.max(radii[None, :] / jnp.maximum(d, 1e-18), axis=1)


def realism_scores(gen_features: np.ndarray, real_features: np.ndarray,
                   radii: np.ndarray | None = None, batch: int = 256) -> np.ndarray:
    """The realism score of Kynkäänniemi et al. (2019, eq. 4), float32 `[N]`:

        R(g) = max_r  radius(r) / ||g - r||

    over the real features r with their pruned k-NN radii (`realism_radii`). R >= 1 iff g lies
    inside some kept real hypersphere (then the image counts for precision); larger is more
    typical of the real data, and images of low realism tend to show artifacts.

    Args:
      gen_features: `[N, D]` features of the generated images.
      real_features: `[M, D]` real features (the same network).
      radii: `realism_radii(real_features)`, when already computed.
      batch: generated rows per device call.
    """
    real = jnp.asarray(real_features, jnp.float32)
    radii = jnp.asarray(realism_radii(real_features) if radii is None else radii, jnp.float32)
    gen = np.asarray(gen_features, np.float32)
    n = len(gen)
    step = min(batch, max(n, 1))
    gen = np.concatenate([gen, np.zeros((-n % step, gen.shape[1]), np.float32)])  # one shape
    out = [np.asarray(_realism(jnp.asarray(gen[i:i + step]), real, radii))
           for i in range(0, len(gen), step)]
    return np.concatenate(out)[:n].astype(np.float32) if out else np.zeros(0, np.float32)


# ----------------------------------------------------------------------------- discriminator


@dataclasses.dataclass(frozen=True)
class Discriminator:
    """A loaded discriminator: Flax module, variables, official kwargs."""

    module: Any
    variables: Mapping[str, Any]
    kwargs: Mapping[str, Any]

    @property
    def group_size(self) -> int:
        """Minibatch-stddev group (the images D sees together); 1 without the layer."""
        size = (self.kwargs.get("epilogue_kwargs") or {}).get("mbstd_group_size", 4)
        return max(int(size or 1), 1)


def load_discriminator(network: str | os.PathLike) -> Discriminator | None:
    """The discriminator `D` of an export folder, bundled model or official `.pkl` snapshot;
    None when it holds no D (e.g. a generator-only export).

    Raises:
      convert.SnapshotError: a D that does not load (one line naming the file).
    """
    path = export_lib.resolve_network(network)
    if os.path.isdir(path):
        if "D" not in export_lib.networks(path):
            return None
        kwargs, params, buffers = export_lib.read_network(path, "D")
    else:
        snapshot = convert.load_snapshot(path)
        record = snapshot.get("D") if isinstance(snapshot, Mapping) else None
        if not isinstance(record, convert.ModuleRecord):
            return None
        kwargs = {"class_name": record.class_name, **record.init_kwargs}
        params, buffers = record.parameters, record.buffers
    try:
        module = build_discriminator(kwargs["class_name"], kwargs)
    except (InvalidArgument, TypeError, ValueError) as e:
        raise convert.SnapshotError(f"{path}: D: {e}") from None
    res, ch, c_dim = module.img_resolution, module.img_channels, module.c_dim
    target = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros([1, res, res, ch]),
                                                jnp.zeros([1, c_dim])))
    variables = convert.to_flax(params, buffers)
    convert.check_against(target, variables, source=path)
    # On one device: `d_scores` runs unsharded, and variables replicated over several devices
    # would repeat the whole batch on each of them.
    return Discriminator(module, jax.tree.map(jnp.asarray, variables), dict(kwargs))


@functools.partial(xla_cpu.jit, static_argnums=0)
def _d_logits(module, variables, images, c):
    x = images.astype(jnp.float32) / 127.5 - 1  # the stored uint8 image, back in [-1, 1]
    return module.apply(variables, x, c)[:, 0]


def d_scores(disc: Discriminator, images: np.ndarray, c: np.ndarray | None = None
             ) -> np.ndarray:
    """D's logit of each uint8 image `[N, H, W, C]` (with labels `c` `[N, c_dim]`) -> `[N]`.

    D sees the images in consecutive groups of its minibatch-stddev size (the last group
    padded with repeats), as in training: a score depends a little on its group, so the same
    images in the same order always score the same.
    """
    images = np.asarray(images)
    n, g = len(images), disc.group_size
    c = np.zeros([n, disc.module.c_dim], np.float32) if c is None else np.asarray(c, np.float32)
    pad = -n % g
    if pad:
        images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        c = np.concatenate([c, np.repeat(c[-1:], pad, axis=0)])
    out = np.asarray(_d_logits(disc.module, disc.variables, jnp.asarray(images), jnp.asarray(c)))
    return out[:n].astype(np.float32)


# ----------------------------------------------------------------------------- filters


def decide(scores: Mapping[str, np.ndarray], thresholds: Thresholds) -> np.ndarray:
    """The first failing filter of each image, as an index into `REASONS` (0 = kept).

    Args:
      scores: `SCORES` arrays `[N]` (a missing or NaN score never drops an image, except
        `face_score`, whose NaN means "no face found" when the detector ran).
      thresholds: the filters.
    Returns:
      int32 `[N]`.
    """
    n = len(next(iter(scores.values())))
    get = lambda k: np.asarray(scores.get(k, np.full(n, np.nan)), np.float64)  # noqa: E731
    reason = np.zeros(n, np.int32)

    def drop(mask: np.ndarray, name: str) -> None:
        reason[(reason == 0) & mask] = REASONS.index(name)

    with np.errstate(invalid="ignore"):
        drop(get("std") < thresholds.min_std, "flat")
        face = get("face_score")
        ran = "face_score" in scores
        if thresholds.require_face and ran:
            drop(np.isnan(face), "no_face")
            drop(face < thresholds.min_face_score, "low_face_score")
            if thresholds.check_landmarks:
                drop(get("landmarks_ok") == 0, "bad_landmarks")
        if thresholds.min_d_score is not None:
            drop(get("d_score") < thresholds.min_d_score, "low_d_score")
        if thresholds.min_realism is not None:
            drop(get("realism") < thresholds.min_realism, "low_realism")
    return reason


def count_reasons(codes: np.ndarray) -> dict[str, int]:
    """`{reason: count}` of `decide` codes, every reason listed."""
    counts = np.bincount(np.asarray(codes, np.int64), minlength=len(REASONS))
    return {r: int(c) for r, c in zip(REASONS, counts, strict=True)}


def summary(values: np.ndarray) -> dict[str, float | int]:
    """`{count, mean, p5, median, p95}` of the finite values (JSON reports)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"count": 0}
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"count": int(len(v)), "mean": float(v.mean()), "p5": float(p5),
            "median": float(p50), "p95": float(p95)}


def names_of(codes: Sequence[int]) -> list[str]:
    """Reason names of `decide` codes."""
    return [REASONS[int(c)] for c in codes]
