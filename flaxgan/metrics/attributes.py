"""CelebA attribute classifiers for the linear-separability metric (``ls``).

The StyleGAN paper measures linear separability with 40 binary classifiers, one per CelebA
attribute, that share the discriminator's architecture and were trained on CelebA-HQ at 256x256.
Those networks exist only as TensorFlow pickles, so flaxgan trains its own
(``python -m experiments.train_attributes``): **one** network with **40 logits** (a shared
StyleGAN2 discriminator trunk and a 40-way head) instead of 40 separate networks. Each logit is
an independent Bernoulli ``P(attribute present) = sigmoid(logit)``; the metric only ever looks
at one attribute's probability at a time, so sharing the trunk changes the cost, not the recipe.

Architecture (:class:`AttributeNet`): the blocks of :class:`flaxgan.models.stylegan2.Discriminator`
(``DiscriminatorBlock`` at ``R, R/2, ..., 8``, resnet by default) followed by the 4x4 head of the
discriminator epilogue -- 3x3 conv, fully connected, output layer -- without minibatch standard
deviation (a classifier's answer must not depend on the other images of its batch) and with
``num_attributes`` outputs.

Input convention (:func:`classify`): uint8 NHWC images of any size. As the official metric,
images larger than the classifier by an integer factor are box-filtered (mean of
``factor x factor`` pixels; the official ``reshape``/``reduce_mean``); any other size is
resampled with ``jax.image.resize`` (linear, antialiased), non-square images stretched.
Pixels map to ``[-1, 1]`` as the generator's range (``x / 127.5 - 1``).

Files (:func:`save_classifier` / :func:`load_classifier`): a directory holding
``classifier.json`` (the :class:`ClassifierConfig`, the attribute names, free-form metadata)
and ``classifier.npz`` (the parameters, keys ``'/'``-joined module paths).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from flaxgan import files, xla_cpu
from flaxgan.metrics import features
from flaxgan.models.stylegan2 import DiscriminatorBlock, _channels
from flaxgan.nn.layers import Conv2dLayer, FullyConnectedLayer
from flaxgan.train.sharding import BATCH_AXIS

__all__ = [
    'ATTRIBUTES',
    'CONFIG_FILE',
    'WEIGHTS_FILE',
    'AttributeClassifier',
    'AttributeNet',
    'ClassifierConfig',
    'classify',
    'heldout_accuracy',
    'init_params',
    'init_with_priors',
    'load_classifier',
    'logits_fn',
    'make_train_step',
    'save_classifier',
    'to_classifier_input',
]

# The 40 CelebA attributes in the column order of list_attr_celeba.txt (and of the
# `celeba_faces` dataset's `attributes` feature).
ATTRIBUTES: tuple[str, ...] = tuple(
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee '
    'Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes '
    'No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling '
    'Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace '
    'Wearing_Necktie Young'.split())

CONFIG_FILE = 'classifier.json'
WEIGHTS_FILE = 'classifier.npz'
FORMAT = 'flaxgan-attribute-classifier-v1'


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Shape of an :class:`AttributeNet` (hashable: a static argument of :func:`classify`).

    Attributes:
      resolution: input side (power of two >= 8); the official classifiers used 256.
      channel_base, channel_max: channels ``min(channel_base // res, channel_max)`` per block,
        as the StyleGAN2 discriminator.
      architecture: ``'resnet'`` (StyleGAN2 default), ``'orig'`` or ``'skip'``.
      num_attributes: number of logits (40 for CelebA).
    """

    resolution: int = 256
    channel_base: int = 16384
    channel_max: int = 512
    architecture: str = 'resnet'
    num_attributes: int = len(ATTRIBUTES)

    def __post_init__(self):
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f'classifier resolution must be a power of two >= 8, got {r}')
        if self.architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f'architecture must be orig|skip|resnet, got {self.architecture!r}')
        if self.num_attributes < 1:
            raise ValueError(f'num_attributes must be >= 1, got {self.num_attributes}')

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassifierConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'unknown classifier config keys {unknown}; expected {sorted(names)}')
        return cls(**d)


class AttributeNet(nn.Module):
    """Images ``[N, R, R, 3]`` in [-1, 1] -> logits ``[N, num_attributes]``.

    StyleGAN2 discriminator blocks (reused from :mod:`flaxgan.models.stylegan2`) and its 4x4
    epilogue without minibatch-stddev, ending in ``num_attributes`` outputs.
    """

    config: ClassifierConfig

    @nn.compact
    def __call__(self, img: jax.Array) -> jax.Array:
        cfg = self.config
        r = cfg.resolution
        if img.ndim != 4 or img.shape[1:] != (r, r, 3):
            raise ValueError(f'expected images [N, {r}, {r}, 3], got {img.shape}')
        ch = lambda res: _channels(res, cfg.channel_base, cfg.channel_max)
        x = None
        layer_idx = 0
        res = r
        while res > 4:
            x, img = DiscriminatorBlock(ch(res) if res < r else 0, ch(res), ch(res // 2), res, 3,
                                        layer_idx, architecture=cfg.architecture,
                                        name=f'b{res}')(x, img)
            layer_idx += 4
            res //= 2
        return _Head(ch(4), cfg.num_attributes, cfg.architecture, name='b4')(x, img)


class _Head(nn.Module):
    """The 4x4 discriminator epilogue without minibatch-stddev: (fromrgb), conv, fc, out."""

    channels: int
    num_outputs: int
    architecture: str

    @nn.compact
    def __call__(self, x: jax.Array, img: jax.Array | None) -> jax.Array:
        if self.architecture == 'skip':
            x = x + Conv2dLayer(self.channels, 1, activation='lrelu', name='fromrgb')(img)
        x = Conv2dLayer(self.channels, 3, activation='lrelu', name='conv')(x)
        # Flatten in NCHW order, as the discriminator's fc layer.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = FullyConnectedLayer(self.channels, activation='lrelu', name='fc')(x)
        return FullyConnectedLayer(self.num_outputs, name='out')(x)


def to_classifier_input(images: jax.Array, resolution: int) -> jax.Array:
    """uint8 (or float in [0, 255]) ``[B, H, W, 3]`` -> float32 ``[B, R, R, 3]`` in [-1, 1].

    Integer downscale factors box-filter as the official metric; other sizes use
    ``jax.image.resize`` (linear, antialiased).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected images [B, H, W, 3], got {images.shape}')
    x = images.astype(jnp.float32)
    b, h, w, c = x.shape
    if (h, w) != (resolution, resolution):
        f = h // resolution
        if h == w and f > 1 and h == f * resolution:
            x = x.reshape(b, resolution, f, resolution, f, c).mean(axis=(2, 4))
        else:
            x = jax.image.resize(x, (b, resolution, resolution, c), method='linear',
                                 antialias=True)
    return x * (2 / 255) - 1


def logits_fn(params: Any, images: jax.Array, config: ClassifierConfig) -> jax.Array:
    """Float images ``[B, R, R, 3]`` in [-1, 1] -> logits ``[B, num_attributes]``."""
    return AttributeNet(config).apply({'params': params}, images)


@functools.partial(xla_cpu.jit, static_argnames='config')
def classify(params: Any, images: jax.Array,
             config: ClassifierConfig = ClassifierConfig()) -> jax.Array:
    """uint8 ``[B, H, W, 3]`` -> ``P(attribute present)`` float32 ``[B, num_attributes]``.

    Pure and jittable (``config`` static); resizes to ``config.resolution`` first (see
    :func:`to_classifier_input`).
    """
    x = to_classifier_input(images, config.resolution)
    return jax.nn.sigmoid(logits_fn(params, x, config))


def init_params(config: ClassifierConfig, key: jax.Array) -> Any:
    """Fresh parameters of :class:`AttributeNet`."""
    r = config.resolution
    return xla_cpu.jit(lambda k: AttributeNet(config).init(k, jnp.zeros((1, r, r, 3)))['params'])(
        key)


@dataclasses.dataclass(frozen=True)
class AttributeClassifier:
    """A loaded classifier: ``clf(images uint8 [B, H, W, 3]) -> probs [B, num_attributes]``.

    Calling it is jittable (the parameters are closed over), so it can be used inside other
    jitted functions (e.g. the ``ls`` metric). ``detector`` is the ``(params, images)`` form for
    :func:`flaxgan.metrics.features.make_extractor`.

    Attributes:
      config: the network shape.
      params: parameter pytree.
      attributes: attribute names, one per output.
      metadata: free-form information saved with the weights (training summary, accuracy).
    """

    config: ClassifierConfig
    params: Any
    attributes: tuple[str, ...] = ATTRIBUTES
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, images: jax.Array) -> jax.Array:
        return classify(self.params, images, self.config)

    @property
    def detector(self):
        return functools.partial(classify, config=self.config)


# ---------------------------------------------------------------------------------------------
# Training (experiments.train_attributes).
# ---------------------------------------------------------------------------------------------


def init_with_priors(config: ClassifierConfig, key: jax.Array, rates: np.ndarray) -> Any:
    """Fresh parameters whose outputs start at each attribute's log-odds.

    Args:
      config: the network.
      key: initialisation key.
      rates: float ``[num_attributes]``, the training part's fraction of positives.
    """
    params = init_params(config, key)
    r = np.clip(np.asarray(rates, np.float64), 1e-3, 1 - 1e-3)
    params['b4']['out']['bias'] = jnp.asarray(np.log(r / (1 - r)), jnp.float32)
    return params


def make_train_step(config: ClassifierConfig, optimizer: optax.GradientTransformation,
                    mesh: Mesh, xflip: bool, seed: int) -> Callable:
    """``step(params, opt_state, images, labels, step_index) -> (params, opt_state, loss,
    accuracy)``: binary cross-entropy per attribute, jitted ``shard_map`` over ``mesh``'s
    batch axis, the gradient of the global mean loss (params donated).

    Args:
      config: the network.
      optimizer: e.g. ``optax.adam``.
      mesh: 1-D mesh (``flaxgan.train.sharding.make_mesh``); images and labels are split
        over it.
      xflip: random horizontal flips (per example, from ``seed``, the step and the device).
      seed: the flips' seed.

    The step takes images uint8 ``[B, H, W, 3]``, labels float32 ``[B, num_attributes]`` in
    {0, 1} and an int32 step index; loss and accuracy are scalars of the whole batch.
    """

    def local(params, opt_state, images, labels, step):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step),
                                 jax.lax.axis_index(BATCH_AXIS))
        x = to_classifier_input(images, config.resolution)
        if xflip:
            flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1], x)

        def loss_fn(p):
            logits = logits_fn(p, x, config)
            loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
            return jax.lax.pmean(loss, BATCH_AXIS), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        acc = jax.lax.pmean(jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32)),
                            BATCH_AXIS)
        return params, opt_state, loss, acc

    mapped = jax.shard_map(local, mesh=mesh,
                           in_specs=(P(), P(), P(BATCH_AXIS), P(BATCH_AXIS), P()),
                           out_specs=(P(), P(), P(), P()))
    return xla_cpu.jit(mapped, donate_argnums=(0, 1))


def heldout_accuracy(classifier: AttributeClassifier, batches: Iterable[Mapping[str, Any]],
                     train_positive_rate: np.ndarray, batch_size: int = 64) -> dict[str, Any]:
    """Per-attribute accuracy on held-out batches, next to the majority-class baseline (the
    training part's more frequent value).

    Args:
      classifier: the trained classifier.
      batches: ``{'image': uint8 [B, H, W, 3], 'attributes': float32 [B, num_attributes]}``.
      train_positive_rate: float ``[num_attributes]`` of the training part.
      batch_size: images per (sharded) classifier call.

    Returns:
      ``{'num_heldout', 'mean_accuracy', 'mean_majority_baseline',
      'attributes_above_baseline', 'per_attribute': {name: {'accuracy',
      'majority_baseline', 'positive_rate_train', 'positive_rate_heldout'}}}``.
    """
    extract = features.make_extractor(classifier.detector, classifier.params,
                                      batch_size=batch_size, name='attributes')
    probs, labels = [], []
    for batch in batches:
        probs.append(extract(batch['image']))
        labels.append(batch['attributes'])
    probs, labels = np.concatenate(probs), np.concatenate(labels) > 0.5
    accuracy = np.mean((probs > 0.5) == labels, axis=0)
    majority = np.asarray(train_positive_rate) >= 0.5
    baseline = np.mean(labels == majority[None], axis=0)
    per = {name: dict(accuracy=float(a), majority_baseline=float(b),
                      positive_rate_train=float(t), positive_rate_heldout=float(h))
           for name, a, b, t, h in zip(classifier.attributes, accuracy, baseline,
                                       train_positive_rate, labels.mean(0), strict=True)}
    return dict(num_heldout=int(len(labels)), mean_accuracy=float(accuracy.mean()),
                mean_majority_baseline=float(baseline.mean()),
                attributes_above_baseline=int(np.sum(accuracy > baseline)), per_attribute=per)


# ---------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------


def save_classifier(directory: str | pathlib.Path, config: ClassifierConfig, params: Any,
                    attributes: Sequence[str] = ATTRIBUTES,
                    metadata: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Writes ``classifier.json`` + ``classifier.npz`` into ``directory``; returns the folder."""
    attributes = tuple(attributes)
    if len(attributes) != config.num_attributes:
        raise ValueError(f'{len(attributes)} attribute names for {config.num_attributes} outputs')
    directory = pathlib.Path(directory)
    files.save_npz(directory / WEIGHTS_FILE,
                   {k: np.asarray(v) for k, v in files.flatten_tree(params).items()})
    info = dict(format=FORMAT, config=dataclasses.asdict(config), attributes=list(attributes),
                metadata=dict(metadata or {}))
    files.write_text(directory / CONFIG_FILE, json.dumps(info, indent=2) + '\n')
    return directory


def load_classifier(path: str | pathlib.Path) -> AttributeClassifier:
    """Reads a classifier saved by :func:`save_classifier`.

    Args:
      path: the folder, or its ``classifier.json`` / ``classifier.npz``.

    Raises:
      FileNotFoundError / ValueError: one line naming the file and what was expected.
    """
    path = pathlib.Path(path).expanduser()
    directory = path.parent if path.name in (CONFIG_FILE, WEIGHTS_FILE) else path
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f'{p}: attribute classifier file not found (expected '
                                    f'{CONFIG_FILE} and {WEIGHTS_FILE} in {directory})')
    try:
        info = json.loads(cfg_path.read_text())
        if info.get('format') != FORMAT:
            raise ValueError(f'format {info.get("format")!r}, expected {FORMAT!r}')
        config = ClassifierConfig.from_dict(info['config'])
        attributes = tuple(info.get('attributes') or ATTRIBUTES)
        if len(attributes) != config.num_attributes:
            raise ValueError(f'{len(attributes)} attribute names for {config.num_attributes} '
                             'outputs')
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{cfg_path}: not a flaxgan attribute classifier config ({e})') from None
    try:
        with np.load(w_path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except Exception as e:  # zip/npy errors of many kinds
        raise ValueError(f'{w_path}: unreadable weights ({type(e).__name__}: {e})') from None
    r = config.resolution
    want = files.flatten_tree(jax.eval_shape(lambda: AttributeNet(config).init(
        jax.random.key(0), jnp.zeros((1, r, r, 3)))['params']))
    missing = sorted(set(want) - set(flat))
    extra = sorted(set(flat) - set(want))
    if missing or extra:
        raise ValueError(f'{w_path}: parameters do not match {CONFIG_FILE} (missing '
                         f'{missing[:3]}, unexpected {extra[:3]})')
    for k, spec in want.items():
        if flat[k].shape != spec.shape:
            raise ValueError(f'{w_path}: {k} has shape {flat[k].shape}, {CONFIG_FILE} implies '
                             f'{spec.shape}')
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), files.unflatten_tree(flat))
    return AttributeClassifier(config, params, attributes, info.get('metadata') or {})
