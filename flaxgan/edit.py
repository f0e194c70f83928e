"""Latent directions and attribute edits (InterFaceGAN, Shen et al. 2020) for StyleGAN2/3.

    from flaxgan import edit, sample
    g = sample.load("celeba32")
    smile = edit.fit_direction(g, "smile", classifier="out/attr_faces32")  # a Direction in W
    edit.save_direction("smile.npz", smile)
    ws = sample.mapping(g, sample.seeds_to_z(g, range(4)))               # [4, num_ws, w_dim]
    edited = edit.apply(ws, smile, [-3, 0, 3], layers="middle", g=g)     # [3, 4, num_ws, w_dim]
    edit.sweep_grid(edit.render(g, edited)).save("smile.png")  # rows: latents, cols: strengths
    young = edit.condition(edit.load_direction("young.npz"), edit.load_direction("male.npz"))

Fitting (InterFaceGAN's `train_boundary`): draw `num` latents `z = RandomState(seed).randn`,
map them (`w`, one layer: without truncation cutoff or mixing every layer holds the same w),
render them, score every image (`Labeller`: a real-valued score, > 0 = attribute present),
keep the `keep` fraction with the highest and the `keep` fraction with the lowest score (2%
each by default) as positives and negatives, hold out `holdout` of each side, and fit a linear
SVM (`sklearn.svm.LinearSVC`, C = 1) to the rest in W (or Z). The boundary is
`normal . x + offset = 0` with `normal` the unit normal pointing to "present"; `accuracy` is the
SVM's accuracy on the held-out kept latents (never used for fitting).

Scores: CelebA attributes are the logits of our attribute classifier
(`flaxgan.metrics.attributes`; logits rather than probabilities, whose float32 sigmoid saturates
at 1 and so ties the most confident images); `yaw` is measured, not classified (CelebA has no
pose attribute): from the MTCNN landmarks of the generated face (`yaw_from_landmarks`); images
without a detected face get no score (NaN) and are left out.

Strength unit: `apply` moves a latent by `strength * scale` along `normal`, where `scale` is the
standard deviation of `normal . x` over the sampled latents. In InterFaceGAN's whitened Z that
std is 1, so the usual strengths (-3..3) mean the same in W, and the same on every network.

Files (`save_direction` / `load_direction`): one `.npz` per direction, see `Direction`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from flaxgan import files, sample, xla_cpu
from flaxgan.errors import InvalidArgument

__all__ = [
    "ATTRIBUTE_ALIASES",
    "Direction",
    "FORMAT",
    "Labeller",
    "Samples",
    "SPACES",
    "YAW",
    "apply",
    "apply_z",
    "classifier_fingerprint",
    "classifier_labeller",
    "condition",
    "direction_from_samples",
    "distance",
    "fit_boundary",
    "fit_direction",
    "fit_directions",
    "load_classifier",
    "load_direction",
    "make_labellers",
    "network_fingerprint",
    "render",
    "resolve_attribute",
    "sample_and_label",
    "save_direction",
    "save_sweep_video",
    "sweep_grid",
    "video_strengths",
    "yaw_from_landmarks",
    "yaw_labeller",
]

FORMAT = "flaxgan-direction-v1"
SPACES = ("w", "z")
YAW = "yaw"
# Short names -> CelebA attribute (any of the 40 CelebA names, any case, works as well).
# `age` is CelebA's `Young`: a positive strength makes the face younger.
ATTRIBUTE_ALIASES = {"smile": "Smiling", "young": "Young", "age": "Young", "male": "Male",
                     "gender": "Male", "eyeglasses": "Eyeglasses", "glasses": "Eyeglasses",
                     "yaw": YAW, "pose": YAW}
DEFAULT_NUM = 10_000
DEFAULT_KEEP = 0.02  # InterFaceGAN's chosen_num_or_ratio
DEFAULT_HOLDOUT = 0.3  # InterFaceGAN's split_ratio 0.7 for training
LABEL_BATCH = 64  # images rendered and labelled at a time
YAW_SIZE = 64  # MTCNN sees the face resized to this (20 px smallest face; 32² faces: all found)
VIDEO_MIN_HEIGHT = 256  # video frames are upscaled (nearest) to at least this height


# ----------------------------------------------------------------------------- labellers


def resolve_attribute(name: str) -> str:
    """`'smile'` -> `'Smiling'`: a short name, `yaw`/`pose`, or a CelebA attribute (any case).

    Raises:
      InvalidArgument: an unknown name (the line lists the short names).
    """
    from flaxgan.metrics.attributes import ATTRIBUTES

    key = str(name).strip().lower()
    if key in ATTRIBUTE_ALIASES:
        return ATTRIBUTE_ALIASES[key]
    found = [a for a in ATTRIBUTES if a.lower() == key]
    if not found:
        raise InvalidArgument(f"unknown attribute {name!r}: expected one of "
                              f"{', '.join(sorted(ATTRIBUTE_ALIASES))} or a CelebA attribute "
                              "(e.g. Bangs, Blond_Hair)")
    return found[0]


@dataclasses.dataclass(frozen=True)
class Labeller:
    """Scores generated images for some attributes.

    Attributes:
      names: the attributes it scores (canonical: `resolve_attribute`'s).
      fn: uint8 `[B, H, W, 3]` -> float `[B, len(names)]`; > 0 means present, the larger the
        surer; NaN = no score (e.g. no face found).
      source: what it is, for the files' metadata (a classifier folder, "mtcnn").
      fingerprint: `classifier_fingerprint` of the classifier behind it ("" for others): a
        dataset labelled by it records it, so that evaluating the labels with the same
        classifier can be recognised as circular.
    """

    names: tuple[str, ...]
    fn: Callable[[np.ndarray], np.ndarray]
    source: str = ""
    fingerprint: str = ""


def load_classifier(classifier: Any) -> Any:
    """An `attributes.AttributeClassifier` from itself or its folder (errors as
    `InvalidArgument`: one line naming the file)."""
    from flaxgan.metrics import attributes

    if isinstance(classifier, attributes.AttributeClassifier):
        return classifier
    try:
        return attributes.load_classifier(classifier)
    except (FileNotFoundError, ValueError) as e:
        raise InvalidArgument(str(e)) from None


def classifier_labeller(classifier: Any, names: Sequence[str],
                        batch_size: int = LABEL_BATCH) -> Labeller:
    """The CelebA attribute classifier's logits for `names`.

    Args:
      classifier: an `attributes.AttributeClassifier` or its folder.
      names: CelebA attributes (short names allowed).
      batch_size: images are padded to a multiple of this (one compiled shape).
    """
    from flaxgan.metrics import attributes

    clf = load_classifier(classifier)
    names = tuple(resolve_attribute(n) for n in names)
    missing = [n for n in names if n not in clf.attributes]
    if missing:
        raise InvalidArgument(f"the attribute classifier has no {', '.join(missing)} output")
    columns = np.array([clf.attributes.index(n) for n in names])
    logits = xla_cpu.jit(lambda p, x: attributes.logits_fn(
        p, attributes.to_classifier_input(x, clf.config.resolution), clf.config))

    def fn(images: np.ndarray) -> np.ndarray:
        n = len(images)
        pad = -n % batch_size
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)])
        return np.asarray(logits(clf.params, images))[:n, columns].astype(np.float32)

    source = str(clf.metadata.get("data", "")) or "attribute classifier"
    return Labeller(names, fn, f"classifier ({source})", classifier_fingerprint(clf))


def classifier_fingerprint(classifier: Any) -> str:
    """sha256 (hex) of an attribute classifier's parameters (as `network_fingerprint`): the
    same weights give the same fingerprint wherever the folder lives."""
    return _tree_fingerprint(load_classifier(classifier).params)


def yaw_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Yaw proxy of 5-point landmarks `[..., 5, 2]` (left eye, right eye, nose, mouth corners,
    "left" = smaller x) -> `[...]`.

    `((nose - m) . (r - l)) / |r - l|^2`, `l`, `r` the eyes and `m` their midpoint: the nose's
    offset along the eye line in inter-ocular distances (rotation-, scale- and shift-invariant).
    0 for a frontal face, positive when the nose points to image-right, roughly
    `sin(yaw) * depth of the nose / inter-ocular distance`; a mirror image negates it.
    """
    p = np.asarray(landmarks, np.float64)
    left, right, nose = p[..., 0, :], p[..., 1, :], p[..., 2, :]
    axis = right - left
    return np.sum((nose - (left + right) / 2) * axis, axis=-1) / np.sum(axis * axis, axis=-1)


def yaw_labeller(detector: Callable[[list[np.ndarray]], list[list[Any]]] | None = None,
                 size: int = YAW_SIZE) -> Labeller:
    """`yaw`: `yaw_from_landmarks` of the highest-scoring MTCNN face, NaN when none is found.

    Images are resized (bicubic) to `size`² first: the generated faces fill their frame, and
    MTCNN's smallest face is 20 px.

    Args:
      detector: `images -> faces per image` (default `mtcnn.MTCNN().detect_batch`).
    """
    from data_pipelines import crop

    if detector is None:
        from data_pipelines.detection import mtcnn
        detector = mtcnn.MTCNN().detect_batch

    def fn(images: np.ndarray) -> np.ndarray:
        resized = [crop.resize_image(im, size, resample="bicubic") for im in images]
        out = np.full([len(images), 1], np.nan, np.float32)
        for i, faces in enumerate(detector(resized)):
            faces = [f for f in faces if f.landmarks is not None]
            if faces:
                out[i, 0] = yaw_from_landmarks(max(faces, key=lambda f: f.score).landmarks)
        return out

    return Labeller((YAW,), fn, "mtcnn landmarks")


def make_labellers(attributes: Sequence[str], classifier: Any = None) -> list[Labeller]:
    """Labellers for `attributes`: one classifier labeller for the CelebA ones, `yaw_labeller`.

    Raises:
      InvalidArgument: CelebA attributes without `classifier` (the line says how to train one).
    """
    names = list(dict.fromkeys(resolve_attribute(a) for a in attributes))
    celeba = [n for n in names if n != YAW]
    out = []
    if celeba:
        if classifier is None:
            raise InvalidArgument(
                f"the attributes {', '.join(celeba)} need the CelebA attribute classifier: train "
                "one with `python -m experiments.train_attributes` and pass its folder")
        out.append(classifier_labeller(classifier, celeba))
    if YAW in names:
        out.append(yaw_labeller())
    return out


# ----------------------------------------------------------------------------- sampling


def network_fingerprint(g: sample.LoadedGenerator) -> str:
    """sha256 (hex) of the generator's parameters: every leaf's path, dtype, shape and bytes,
    in sorted path order. Directions record it; another network has another W."""
    return _tree_fingerprint(g.params)


def _tree_fingerprint(tree: Mapping[str, Any]) -> str:
    """sha256 (hex) of a parameter tree: every leaf's path, dtype, shape and bytes, in sorted
    path order."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(dict(tree))
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Samples:
    """Labelled latents: what the directions are fitted on.

    Attributes:
      z: float32 `[N, z_dim]`, `np.random.RandomState(seed).randn(N, z_dim)`.
      w: float32 `[N, w_dim]`, the mapped w (first layer; truncated by `truncation_psi`).
      scores: attribute -> float32 `[N]` (NaN = no score).
      sources: attribute -> its labeller's `source`.
      network: `network_fingerprint` of the generator.
      seed, truncation_psi: how the latents were drawn.
    """

    z: np.ndarray
    w: np.ndarray
    scores: dict[str, np.ndarray]
    sources: dict[str, str]
    network: str
    seed: int
    truncation_psi: float


def sample_and_label(
    g: sample.LoadedGenerator,
    labellers: Sequence[Labeller],
    num: int = DEFAULT_NUM,
    *,
    seed: int = 0,
    truncation_psi: float = 1.0,
    c: Any = None,
    batch_size: int = LABEL_BATCH,
    noise_mode: str = "const",
    progress: bool = True,
) -> Samples:
    """Draws `num` latents, renders them `batch_size` at a time and scores every image with
    every labeller (images are never all held in memory)."""
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise InvalidArgument(f"num must be an integer >= 1, got {num!r}")
    if g.img_channels != 3:
        raise InvalidArgument(f"labelling needs RGB images; this generator has "
                              f"{g.img_channels} channels")
    z = np.random.RandomState(seed).randn(num, g.z_dim).astype(np.float32)
    # Whole batches only (the last one padded with repeats of z), so that nothing recompiles.
    padded = np.concatenate([z, z[:1].repeat(-num % batch_size, axis=0)])
    names = [n for lab in labellers for n in lab.names]
    ws_first, parts = [], {n: [] for n in names}
    bar = tqdm(total=num, desc="label", unit="img", disable=not progress, leave=False)
    for i in range(0, num, batch_size):
        ws = sample.mapping(g, padded[i:i + batch_size], c, truncation_psi,
                            batch_size=batch_size)
        images = sample.to_uint8(sample.synthesize(g, ws, noise_mode=noise_mode,
                                                   batch_size=batch_size))
        rows = min(batch_size, num - i)
        ws_first.append(ws[:rows, 0])
        for lab in labellers:
            scores = np.asarray(lab.fn(images), np.float32).reshape(len(images), len(lab.names))
            for j, name in enumerate(lab.names):
                parts[name].append(scores[:rows, j])
        bar.update(rows)
    bar.close()
    return Samples(z=z, w=np.concatenate(ws_first).astype(np.float32),
                   scores={n: np.concatenate(v) for n, v in parts.items()},
                   sources={n: lab.source for lab in labellers for n in lab.names},
                   network=network_fingerprint(g), seed=int(seed),
                   truncation_psi=float(truncation_psi))


# ----------------------------------------------------------------------------- fitting


def fit_boundary(latents: np.ndarray, scores: np.ndarray, keep: float = DEFAULT_KEEP,
                 holdout: float = DEFAULT_HOLDOUT, seed: int = 0, svm_c: float = 1.0
                 ) -> tuple[np.ndarray, float, dict[str, Any]]:
    """A linear SVM between the highest- and lowest-scoring latents (InterFaceGAN).

    Args:
      latents: `[N, D]`.
      scores: `[N]`, > 0 = present; NaN rows are left out.
      keep: fraction of the scored latents taken from each end (top: positives, bottom:
        negatives).
      holdout: fraction of each side held out for `accuracy` (stratified, random by `seed`).
      seed: the held-out split and the SVM's.
      svm_c: the SVM's C.
    Returns:
      `(normal [D] float32 unit, offset, stats)`: the boundary `normal . x + offset = 0`,
      `normal` towards the positives; `stats`: `accuracy` (held-out kept latents),
      `train_accuracy`, `accuracy_all` (every scored latent not fitted on, labelled by the sign
      of its score), `score_correlation` (Pearson, signed distance vs score, all scored
      latents), `positive_rate` (score > 0), and the counts.
    Raises:
      InvalidArgument: too few scored latents, or scores that do not separate the two ends.
    """
    import sklearn.exceptions  # scikit-learn is only needed here
    import sklearn.svm

    latents, scores = np.asarray(latents, np.float64), np.asarray(scores, np.float64)
    if latents.ndim != 2 or scores.shape != latents.shape[:1]:
        raise InvalidArgument(f"expected latents [N, D] and scores [N], got {latents.shape} "
                              f"and {scores.shape}")
    if not (0 < keep <= 0.5 and 0 <= holdout < 1):
        raise InvalidArgument(f"keep must be in (0, 0.5] and holdout in [0, 1), got {keep}, "
                              f"{holdout}")
    ok = np.isfinite(scores)
    x, s = latents[ok], scores[ok]
    k = int(len(s) * keep)
    n_held = int(round(k * holdout))
    if k - n_held < 1 or (holdout > 0 and n_held < 1):
        raise InvalidArgument(f"{len(s)} scored latents (of {len(scores)}) keep {k} per side at "
                              f"keep={keep}: too few to fit and hold out; raise num or keep")
    order = np.argsort(s, kind="stable")
    neg, pos = order[:k], order[::-1][:k]
    if s[pos].min() <= s[neg].max():
        raise InvalidArgument(f"the top and bottom {keep:.1%} of the scores overlap "
                              f"({s[pos].min():.4g} <= {s[neg].max():.4g}): nothing to separate")
    rng = np.random.RandomState(seed)
    pos, neg = rng.permutation(pos), rng.permutation(neg)
    train = np.concatenate([pos[n_held:], neg[n_held:]])
    held = np.concatenate([pos[:n_held], neg[:n_held]])
    y = np.concatenate([np.ones(k - n_held), np.zeros(k - n_held)])

    # Centred inputs: liblinear penalises the intercept, the mean then sits at x = 0.
    mu = x[train].mean(axis=0)
    svm = sklearn.svm.LinearSVC(C=svm_c, max_iter=10_000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        svm.fit(x[train] - mu, y)
    coef, b = svm.coef_[0], float(svm.intercept_[0])
    norm = float(np.linalg.norm(coef))
    if not norm > 0:
        raise InvalidArgument("the SVM found no boundary (a zero normal)")
    normal, offset = coef / norm, (b - float(coef @ mu)) / norm

    dist = x @ normal + offset
    unfitted = np.setdiff1d(np.arange(len(s)), train)
    stats = dict(
        accuracy=_accuracy(dist[held], np.arange(len(held)) < n_held),
        train_accuracy=_accuracy(dist[train], y > 0),
        accuracy_all=_accuracy(dist[unfitted], s[unfitted] > 0),
        score_correlation=float(np.corrcoef(dist, s)[0, 1]) if np.std(s) > 0 else math.nan,
        positive_rate=float(np.mean(s > 0)), num_scored=int(len(s)),
        num_kept_per_side=int(k), num_train=int(len(train)), num_heldout=int(len(held)),
        positive_min_score=float(s[pos].min()), negative_max_score=float(s[neg].max()))
    return normal.astype(np.float32), float(offset), stats


def _accuracy(distances: np.ndarray, present: np.ndarray) -> float:
    """Fraction of `distances > 0` agreeing with `present` (NaN for none)."""
    return float(np.mean((distances > 0) == present)) if len(present) else math.nan


@dataclasses.dataclass(frozen=True)
class Direction:
    """A latent direction: the unit normal of an attribute's boundary and how it was made.

    Attributes:
      normal: float32 `[D]`, unit, pointing to "attribute present".
      offset: the boundary is `normal . x + offset = 0` (`distance`).
      scale: std of `normal . x` over the sampled latents: the latent move of strength 1.
      mean: float32 `[D]`, mean of the sampled latents (used by `condition`).
      attribute: canonical name (`Smiling`, `yaw`, ...).
      space: 'w' or 'z'.
      network: `network_fingerprint` of the generator it was fitted on ('' if unknown).
      num_samples: latents drawn.
      accuracy: the SVM's accuracy on held-out kept latents.
      metadata: JSON-able details (fit statistics, labeller, keep, seed, conditioning).
    """

    normal: np.ndarray
    offset: float
    scale: float
    mean: np.ndarray
    attribute: str
    space: str = "w"
    network: str = ""
    num_samples: int = 0
    accuracy: float = math.nan
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.normal.shape[0])

    @property
    def step(self) -> np.ndarray:
        """float32 `[D]`: the latent move of strength 1, `scale * normal`."""
        return (self.scale * self.normal).astype(np.float32)

    def replace(self, **changes) -> Direction:
        return dataclasses.replace(self, **changes)


def direction_from_samples(samples: Samples, attribute: str, space: str = "w", *,
                           keep: float = DEFAULT_KEEP, holdout: float = DEFAULT_HOLDOUT,
                           seed: int = 0) -> Direction:
    """Fits `attribute`'s boundary in `space` ('w' or 'z') on labelled `samples` (a name of
    `resolve_attribute`, or one that a custom labeller scored)."""
    name = attribute if attribute in samples.scores else resolve_attribute(attribute)
    if space not in SPACES:
        raise InvalidArgument(f"space must be one of {SPACES}, got {space!r}")
    if name not in samples.scores:
        raise InvalidArgument(f"the samples have no {name} scores (have "
                              f"{', '.join(samples.scores)})")
    latents = samples.w if space == "w" else samples.z
    try:
        normal, offset, stats = fit_boundary(latents, samples.scores[name], keep, holdout, seed)
    except InvalidArgument as e:
        raise InvalidArgument(f"{name} ({space}): {e}") from None
    meta = dict(stats, keep=keep, holdout=holdout, seed=samples.seed, svm_seed=seed,
                truncation_psi=samples.truncation_psi, labeller=samples.sources.get(name, ""))
    return Direction(normal=normal, offset=offset,
                     scale=float(np.std(latents.astype(np.float64) @ normal)),
                     mean=latents.mean(axis=0).astype(np.float32), attribute=name, space=space,
                     network=samples.network, num_samples=int(len(latents)),
                     accuracy=stats["accuracy"], metadata=meta)


def fit_directions(g: sample.LoadedGenerator, attributes: Sequence[str], *,
                   classifier: Any = None, labellers: Sequence[Labeller] | None = None,
                   num: int = DEFAULT_NUM, space: str = "w", keep: float = DEFAULT_KEEP,
                   holdout: float = DEFAULT_HOLDOUT, seed: int = 0,
                   truncation_psi: float = 1.0, c: Any = None, batch_size: int = LABEL_BATCH,
                   progress: bool = True) -> dict[str, Direction]:
    """Directions for several attributes from one set of `num` labelled samples.

    Args:
      g: the generator (`sample.load`).
      attributes: names (`resolve_attribute`): smile, young, male, eyeglasses, yaw, ...
      classifier: the CelebA attribute classifier (or its folder) for CelebA attributes.
      labellers: instead of `classifier` / MTCNN, labellers covering `attributes`.
      num, seed, truncation_psi, c, batch_size: the samples (`sample_and_label`).
      space, keep, holdout: the fit (`fit_boundary`).
    Returns:
      `{attribute as given: Direction}`.
    """
    if labellers is None:
        labellers = make_labellers(attributes, classifier)
    samples = sample_and_label(g, labellers, num, seed=seed, truncation_psi=truncation_psi, c=c,
                               batch_size=batch_size, progress=progress)
    return {a: direction_from_samples(samples, a, space, keep=keep, holdout=holdout, seed=seed)
            for a in attributes}


def fit_direction(g: sample.LoadedGenerator, attribute: str, **kwargs) -> Direction:
    """One attribute's direction; `kwargs` as `fit_directions` (e.g. `classifier=`, `num=`,
    `space=`, `labellers=`)."""
    return fit_directions(g, [attribute], **kwargs)[attribute]


# ----------------------------------------------------------------------------- geometry


def distance(latents: np.ndarray, direction: Direction) -> np.ndarray:
    """Signed distance `normal . x + offset` of latents `[..., D]` to the boundary, `[...]`."""
    return np.asarray(latents, np.float64) @ direction.normal.astype(np.float64) \
        + direction.offset


def condition(direction: Direction, *others: Direction) -> Direction:
    """`direction` with its projections onto `others` removed, renormalised (InterFaceGAN's
    conditional manipulation: e.g. age without gender).

    The others' normals are orthonormalised first (Gram-Schmidt, as a QR), so several
    conditions are removed together. The new boundary passes through the old boundary's point
    nearest the sample mean; `scale` is kept (strengths stay comparable).

    Raises:
      InvalidArgument: another space or dimension, or `direction` inside the others' span.
    """
    if not others:
        return direction
    for o in others:
        if o.space != direction.space or o.dim != direction.dim:
            raise InvalidArgument(f"cannot condition {direction.attribute} ({direction.space}, "
                                  f"{direction.dim}-D) on {o.attribute} ({o.space}, {o.dim}-D)")
    n = direction.normal.astype(np.float64)
    basis, _ = np.linalg.qr(np.stack([o.normal.astype(np.float64) for o in others], axis=1))
    rest = n - basis @ (basis.T @ n)
    norm = float(np.linalg.norm(rest))
    if norm < 1e-6:
        raise InvalidArgument(f"{direction.attribute} lies in the span of "
                              f"{', '.join(o.attribute for o in others)}: nothing left")
    new = rest / norm
    mean = direction.mean.astype(np.float64)
    foot = mean - (n @ mean + direction.offset) * n  # on the old boundary
    meta = dict(direction.metadata)
    meta["conditioned_on"] = [*meta.get("conditioned_on", []), *(o.attribute for o in others)]
    meta["cosine_to_unconditioned"] = float(new @ n)
    return direction.replace(normal=new.astype(np.float32), offset=float(-new @ foot),
                             metadata=meta)


# ----------------------------------------------------------------------------- editing


def _strengths(strengths: Any) -> np.ndarray:
    s = np.atleast_1d(np.asarray(strengths, np.float32))
    if s.ndim != 1 or not s.size or not np.all(np.isfinite(s)):
        raise InvalidArgument(f"strengths must be a non-empty list of finite numbers, got "
                              f"{strengths!r}")
    return s


def _step_vector(direction: Direction | np.ndarray, dim: int, space: str) -> np.ndarray:
    """The move of strength 1: `Direction.step`, or a raw vector `[dim]` as given."""
    if isinstance(direction, Direction):
        if direction.space != space:
            raise InvalidArgument(f"{direction.attribute} is a {direction.space.upper()} "
                                  f"direction; this edit is in {space.upper()}")
        step = direction.step
    else:
        step = np.asarray(direction, np.float32)
    if step.shape != (dim,):
        raise InvalidArgument(f"the direction is {step.shape[0] if step.ndim == 1 else step.shape}"
                              f"-dimensional; the latents are {dim}-dimensional")
    return step


def _layer_mask(layers: str | Sequence[int] | None, num_ws: int,
                g: sample.LoadedGenerator | None) -> np.ndarray:
    """float32 `[num_ws]`: 1 on the edited layers (`sample.layer_indices`; names need `g`)."""
    if g is not None:
        if g.num_ws != num_ws:
            raise InvalidArgument(f"ws have {num_ws} layers; the generator has {g.num_ws}")
        idx = sample.layer_indices(g, layers)
    elif layers is None or (isinstance(layers, str) and layers == "all"):
        idx = tuple(range(num_ws))
    elif isinstance(layers, str):
        raise InvalidArgument(f"layers={layers!r} needs the generator (pass g=)")
    else:
        idx = tuple(int(i) for i in layers)
        if any(not 0 <= i < num_ws for i in idx):
            raise InvalidArgument(f"layer indices must be in [0, {num_ws}), got {list(layers)}")
    mask = np.zeros(num_ws, np.float32)
    mask[list(idx)] = 1.0
    return mask


def apply(ws: np.ndarray, direction: Direction | np.ndarray, strengths: Sequence[float],
          layers: str | Sequence[int] | None = None, *,
          g: sample.LoadedGenerator | None = None) -> np.ndarray:
    """Moves ws along a W direction: `ws + strength * step` on the chosen layers.

    Args:
      ws: `[N, num_ws, w_dim]` (`sample.mapping`, a projection's `w`).
      direction: a W `Direction` (step = `scale * normal`) or a raw step vector `[w_dim]`.
      strengths: `[S]`; 0 leaves ws unchanged (exactly).
      layers: None / 'all', 'coarse' / 'middle' / 'fine' (need `g`; see
        `sample.layer_indices`) or ws indices; the other layers keep their w.
      g: the generator, for named layer ranges.
    Returns:
      float32 `[S, N, num_ws, w_dim]`.
    """
    ws = np.asarray(ws, np.float32)
    if ws.ndim != 3:
        raise InvalidArgument(f"ws must be [N, num_ws, w_dim], got {ws.shape}")
    step = _step_vector(direction, ws.shape[2], "w")
    mask = _layer_mask(layers, ws.shape[1], g)
    s = _strengths(strengths)
    return ws[None] + s[:, None, None, None] * (mask[:, None] * step)[None, None]


def apply_z(z: np.ndarray, direction: Direction | np.ndarray,
            strengths: Sequence[float]) -> np.ndarray:
    """Moves z `[N, z_dim]` along a Z direction -> float32 `[S, N, z_dim]` (map them next)."""
    z = np.asarray(z, np.float32)
    if z.ndim != 2:
        raise InvalidArgument(f"z must be [N, z_dim], got {z.shape}")
    step = _step_vector(direction, z.shape[1], "z")
    return z[None] + _strengths(strengths)[:, None, None] * step


def render(g: sample.LoadedGenerator, edited: np.ndarray, noise_mode: str = "const",
           batch_size: int = sample.DEFAULT_BATCH, **synthesis_kwargs) -> np.ndarray:
    """Edited ws `[S, N, num_ws, w_dim]` -> float32 images `[S, N, H, W, C]` in [-1, 1]."""
    edited = np.asarray(edited, np.float32)
    if edited.ndim != 4:
        raise InvalidArgument(f"edited ws must be [S, N, num_ws, w_dim], got {edited.shape}")
    s, n = edited.shape[:2]
    images = sample.synthesize(g, edited.reshape(s * n, *edited.shape[2:]),
                               noise_mode=noise_mode, batch_size=batch_size,
                               **synthesis_kwargs)
    return images.reshape(s, n, *images.shape[1:])


def sweep_grid(images: np.ndarray) -> Image.Image:
    """Images `[S, N, H, W, C]` (float in [-1, 1] or uint8) -> one grid: a row per latent, a
    column per strength."""
    images = np.asarray(images)
    if images.ndim != 5:
        raise InvalidArgument(f"expected images [S, N, H, W, C], got {images.shape}")
    s, n = images.shape[:2]
    tiles = np.swapaxes(images, 0, 1).reshape(n * s, *images.shape[2:])
    return sample.grid(tiles, cols=s)


def video_strengths(strengths: Sequence[float], frames: int) -> np.ndarray:
    """`frames` strengths from min to max and back (a seamless loop), float32 `[frames]`."""
    s = _strengths(strengths)
    if frames < 2:
        raise InvalidArgument(f"a sweep video needs at least 2 frames, got {frames}")
    tri = 1 - np.abs(1 - 2 * np.arange(frames) / frames)  # 0 -> 1 (at frames / 2) -> 0
    return (s.min() + (s.max() - s.min()) * tri).astype(np.float32)


def _upscale(frame: np.ndarray, min_height: int = VIDEO_MIN_HEIGHT) -> np.ndarray:
    """uint8 `[H, W, C]` repeated (nearest) by the smallest integer factor reaching
    `min_height` (small generators make unwatchably small videos)."""
    k = max(1, -(-min_height // frame.shape[0]))
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def save_sweep_video(path: str | os.PathLike, g: sample.LoadedGenerator,
                     ws_at: Callable[[np.ndarray], np.ndarray], strengths: Sequence[float], *,
                     fps: int = 24, cols: int = 8, noise_mode: str = "const",
                     chunk: int = 16) -> int:
    """Writes an MP4 (H.264 through imageio-ffmpeg's bundled ffmpeg): one frame per strength,
    the N latents tiled `cols` to a row, upscaled to at least 256 px high.

    Args:
      ws_at: `strengths [T] -> ws [T, N, num_ws, w_dim]`, e.g.
        `functools.partial(edit.apply, ws, direction, layers="coarse", g=g)`.
      strengths: one per frame (`video_strengths`).
    Returns:
      The number of frames written.
    """
    import imageio

    strengths = _strengths(strengths)
    count = 0
    with warnings.catch_warnings(), imageio.get_writer(
            os.fspath(path), mode="I", fps=fps, codec="libx264", bitrate="16M") as video:
        # JAX warns at every fork; the ffmpeg subprocess execs at once (no JAX in the child).
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        for i in range(0, len(strengths), chunk):
            images = sample.to_uint8(render(g, ws_at(strengths[i:i + chunk]), noise_mode))
            for frame in images:  # [N, H, W, C]
                tiled = np.asarray(sample.grid(frame, cols=min(cols, len(frame))))
                video.append_data(_upscale(tiled.reshape(*tiled.shape[:2], -1)))
                count += 1
    return count


# ----------------------------------------------------------------------------- files


_FILE_KEYS = ("format", "normal", "offset", "scale", "mean", "attribute", "space", "network",
              "num_samples", "accuracy", "metadata")


def save_direction(path: str | os.PathLike, direction: Direction) -> str:
    """Writes `direction` as one `.npz` (atomically; the name is kept as given). Returns it."""
    path = os.fspath(path)
    with files.atomic_write(path) as f:
        np.savez(f, format=np.str_(FORMAT), normal=direction.normal.astype(np.float32),
                 offset=np.float64(direction.offset), scale=np.float64(direction.scale),
                 mean=direction.mean.astype(np.float32), attribute=np.str_(direction.attribute),
                 space=np.str_(direction.space), network=np.str_(direction.network),
                 num_samples=np.int64(direction.num_samples),
                 accuracy=np.float64(direction.accuracy),
                 metadata=np.str_(json.dumps(dict(direction.metadata), allow_nan=True)))
    return path


def load_direction(path: str | os.PathLike) -> Direction:
    """Reads a `save_direction` file.

    Raises:
      InvalidArgument: one line naming the file: missing, not an npz, not a direction file, or
        inconsistent arrays.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidArgument(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # zip / npy errors of many kinds
        raise InvalidArgument(f"{path}: not a direction file (not a readable .npz: "
                              f"{type(e).__name__})") from None
    missing = [k for k in _FILE_KEYS if k not in data]
    if missing or str(data["format"]) != FORMAT:
        what = f"missing {missing[0]!r}" if missing else f"format {str(data['format'])!r}"
        raise InvalidArgument(f"{path}: not a {FORMAT} file ({what}; written by "
                              "flaxgan.edit.save_direction / experiments.directions)")
    try:
        normal = np.asarray(data["normal"], np.float32)
        mean = np.asarray(data["mean"], np.float32)
        if normal.ndim != 1 or mean.shape != normal.shape:
            raise ValueError(f"normal {normal.shape} and mean {mean.shape} must be the same [D]")
        norm = float(np.linalg.norm(normal))
        if not (np.all(np.isfinite(normal)) and abs(norm - 1) < 1e-3):
            raise ValueError(f"normal must be a finite unit vector (norm {norm:.4g})")
        space = str(data["space"])
        if space not in SPACES:
            raise ValueError(f"space {space!r}, expected one of {SPACES}")
        scale, offset = float(data["scale"]), float(data["offset"])
        if not (math.isfinite(offset) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"offset {offset} and scale {scale} must be finite, scale > 0")
        metadata = json.loads(str(data["metadata"]))
        if not isinstance(metadata, dict):
            raise ValueError("metadata must be a JSON object")
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{path}: bad direction file ({e})") from None
    return Direction(normal=normal / norm, offset=offset, scale=scale, mean=mean,
                     attribute=str(data["attribute"]), space=space,
                     network=str(data["network"]), num_samples=int(data["num_samples"]),
                     accuracy=float(data["accuracy"]), metadata=metadata)
