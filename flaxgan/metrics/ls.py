"""Linear separability (LS) of attributes in Z and W (StyleGAN, Karras et al. 2019, sec. 4.2).

The official procedure (``metrics/linear_separability.py`` of the StyleGAN repository):

1. Draw ``num_samples`` (200k) latents ``z ~ N(0, I)``, map them (``psi = 1``) and synthesize
   images; keep ``z`` and the ``w`` of one layer (the official takes the last layer's dlatent;
   without truncation or mixing every layer holds the same ``w``).
2. Run the 40 CelebA attribute classifiers on the images (downscaled to the classifiers'
   resolution). The official networks give two-way softmaxes; here a classifier gives
   ``p = P(attribute present)`` and the two-way distribution is ``(p, 1 - p)``.
3. Per attribute: sort the samples by confidence ``max(p, 1 - p)`` (stable, most confident first)
   and keep the first ``num_keep`` (half, 100k); the label is the argmax of ``(p, 1 - p)``.
4. Fit ``sklearn.svm.LinearSVC`` (the defaults of the official's time: C 1, squared hinge, L2,
   dual, tol 1e-4, 1000 iterations) to (latent, label) in Z and in W, and predict the same
   samples. When the fit fails (one class only) the prediction counts as perfect.
5. ``H(label | SVM prediction)`` in bits from the 2x2 joint table (rows: prediction, columns:
   label) as ``max(0, H(label) - I(prediction; label))``; the score is ``2 ** sum`` over the
   attributes: ``ls_z`` and ``ls_w``. Lower is better; 1 means every attribute is perfectly
   linearly separable, ``2 ** 40`` that the SVMs explain nothing of balanced labels.

Differences from the official run: images are converted to uint8 (``x * 127.5 + 128``,
clipped, truncated; the flaxgan classifier interface) before the classifier; the noise inputs
are drawn per batch (``LatentGenerator.synthesis(ws, key)``) instead of per image; a
conditional generator gets a uniformly drawn class per sample; the SVMs get
``random_state=seed`` so that a run is reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from flaxgan import xla_cpu
from flaxgan.images import to_uint8
from flaxgan.metrics import ppl
from flaxgan.metrics.features import class_labels
from flaxgan.train.sharding import BATCH_AXIS, make_mesh

__all__ = [
    'attribute_entropies',
    'conditional_entropy',
    'joint_table',
    'keep_most_confident',
    'linear_separability',
    'sample_attributes',
    'separability_scores',
    'svm_predictions',
]


# ---------------------------------------------------------------------------------------------
# Information theory on a 2-D joint table (bits).
# ---------------------------------------------------------------------------------------------


def _normalize(p) -> np.ndarray:
    p = np.asarray(p, np.float32)
    if p.ndim != 2:
        raise ValueError(f'expected a 2-D joint table, got shape {p.shape}')
    return (p / np.sum(p)).astype(np.float64)


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-np.sum(nz * np.log2(nz)))


def _mutual_information(p: np.ndarray) -> float:
    px = np.sum(p, axis=1, keepdims=True)
    py = np.sum(p, axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / (px * py)[nz])))


def conditional_entropy(table) -> float:
    """``H(Y | X)`` in bits of a joint table (X on axis 0, Y on axis 1; any positive scale).

    As the official: ``max(0, H(Y) - I(X; Y))`` after normalising the float32 table.
    """
    p = _normalize(table)
    return max(0.0, _entropy(np.sum(p, axis=0, keepdims=True)) - _mutual_information(p))


# ---------------------------------------------------------------------------------------------
# Per-attribute steps.
# ---------------------------------------------------------------------------------------------


def keep_most_confident(prob: np.ndarray, num_keep: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, labels)`` of the ``num_keep`` most confident samples of one attribute.

    ``prob [N]`` is P(attribute present); confidence ``max(p, 1 - p)``, sorted descending with
    ties in sample order (the official stable sort); label = argmax of ``(p, 1 - p)`` (0 =
    present, 1 = absent, the official class order; ties go to 0).
    """
    prob = np.asarray(prob, np.float32)
    pair = np.stack([prob, np.float32(1) - prob], axis=1)
    order = np.argsort(-np.max(pair, axis=1), kind='stable')[:num_keep]
    return order, np.argmax(pair[order], axis=1)


def svm_predictions(inputs: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fits ``LinearSVC`` to ``(inputs, labels)`` and predicts ``inputs``; ``labels`` itself
    when the fit fails (a single class), as the official."""
    import sklearn.exceptions  # scikit-learn is only needed here
    import sklearn.svm

    svm = sklearn.svm.LinearSVC(C=1.0, loss='squared_hinge', penalty='l2', dual=True,
                                tol=1e-4, max_iter=1000, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', sklearn.exceptions.ConvergenceWarning)
            svm.fit(inputs, labels)
        return svm.predict(inputs)
    except ValueError:
        return labels


def joint_table(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """2x2 ``P(prediction = row, label = col)``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return np.asarray([[np.mean((predictions == r) & (labels == c)) for c in (0, 1)]
                       for r in (0, 1)])


def attribute_entropies(latents: dict[str, np.ndarray], probs: np.ndarray, num_keep: int,
                        seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """``{space: [A] conditional entropies}`` for ``latents = {'z': [N, D], 'w': [N, D]}`` and
    ``probs [N, A]`` (P(attribute present))."""
    probs = np.asarray(probs)
    if not 0 < num_keep <= probs.shape[0]:
        raise ValueError(f'num_keep must be in [1, {probs.shape[0]}], got {num_keep}')
    out = {space: np.zeros(probs.shape[1]) for space in latents}
    for a in tqdm(range(probs.shape[1]), desc='ls svm', disable=not progress, leave=False):
        keep, labels = keep_most_confident(probs[:, a], num_keep)
        for space, x in latents.items():
            pred = svm_predictions(np.asarray(x)[keep], labels, seed)
            out[space][a] = conditional_entropy(joint_table(pred, labels))
    return out


def separability_scores(entropies: dict[str, np.ndarray]) -> dict[str, float]:
    """``{'ls_<space>': 2 ** sum(entropies)}``."""
    return {f'ls_{space}': float(2.0 ** np.sum(h)) for space, h in entropies.items()}


# ---------------------------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------------------------


def sample_attributes(generator: ppl.LatentGenerator,
                      classify_fn: Callable[[jax.Array], jax.Array], num_samples: int,
                      batch_size: int = 64, seed: int = 0, progress: bool = True,
                      mesh: Mesh | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z [N, z_dim], w [N, w_dim], probs [N, A])`` for ``num_samples`` random latents.

    Step ``i`` draws ``batch_size`` latents (rounded up to a multiple of the device count; a
    one-hot class each for a conditional generator, drawn from its ``class_probs`` or
    uniformly) and one noise key from ``fold_in(key(seed), i)``; mapping, synthesis and
    ``classify_fn`` (which must be jittable) then run data-parallel over ``mesh`` (default:
    all local devices), so the samples do not depend on the device count.
    """
    mesh = make_mesh(local=True) if mesh is None else mesh
    batch_size = -(-batch_size // mesh.size) * mesh.size
    c_dim = getattr(generator, 'c_dim', 0)

    def local(z, c, noise_key):
        ws = generator.mapping(z, c)
        probs = classify_fn(to_uint8(generator.synthesis(ws, noise_key), rgb=True))
        return ws[:, -1], probs.astype(jnp.float32)

    @xla_cpu.jit
    def step(key):
        z_key, c_key, noise_key = jax.random.split(key, 3)
        z = jax.random.normal(z_key, (batch_size, generator.z_dim))
        c = class_labels(c_key, batch_size, c_dim, getattr(generator, 'class_probs', None))
        w, probs = jax.shard_map(local, mesh=mesh, in_specs=(P(BATCH_AXIS), P(BATCH_AXIS), P()),
                                 out_specs=P(BATCH_AXIS))(z, c, noise_key)
        return z, w, probs

    key = jax.random.key(seed)
    outs = []
    for i in tqdm(range(-(-num_samples // batch_size)), desc='ls sampling',
                  disable=not progress, leave=False):
        outs.append(jax.device_get(step(jax.random.fold_in(key, i))))
    z, w, probs = (np.concatenate(parts)[:num_samples] for parts in zip(*outs, strict=True))
    return z, w, probs


def linear_separability(generator: ppl.LatentGenerator,
                        classify_fn: Callable[[jax.Array], jax.Array],
                        num_samples: int = 200000, num_keep: int | None = None,
                        batch_size: int = 64, seed: int = 0, progress: bool = True,
                        mesh: Mesh | None = None) -> dict[str, float]:
    """The official ``ls`` metric: ``{'ls_z': ..., 'ls_w': ...}``.

    Args:
      generator: mapping (``psi = 1``), synthesis, ``z_dim`` (and ``c_dim``).
      classify_fn: jittable ``images uint8 [B, H, W, 3] -> P(attribute present) [B, A]``
        (e.g. a loaded :class:`flaxgan.metrics.attributes.AttributeClassifier`).
      num_samples: generated images (official 200k).
      num_keep: most confident samples kept per attribute (default half, official 100k).
      batch_size: images per jitted step (all local devices together).
      seed: latents, noise and SVM seed.
      progress: tqdm bars.
      mesh: 1-D ``'batch'`` mesh for generation (default: all local devices).
    """
    num_keep = num_samples // 2 if num_keep is None else num_keep
    z, w, probs = sample_attributes(generator, classify_fn, num_samples, batch_size, seed,
                                    progress, mesh)
    entropies = attribute_entropies({'z': z, 'w': w}, probs, num_keep, seed, progress)
    return separability_scores(entropies)
