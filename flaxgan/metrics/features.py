"""Jitted, device-sharded feature extraction over streams of uint8 images.

A *detector* is a pure function ``detector(params, images) -> features``: ``images`` uint8
``[B, H, W, 3]``, ``features`` float32 ``[B, D]`` (e.g. :func:`inception.inception_features`).
:func:`make_extractor` jits it under ``jax.shard_map`` over a 1-D ``Mesh`` named ``'batch'`` of
the local devices: params are replicated, each batch is padded to a fixed size (no recompiles on
the last, short batch), split over devices, and the features come back as numpy.

An :class:`ImageSource` is a named, sized, re-iterable stream of uint8 NHWC batches: a folder
(:func:`folder_source`), an in-memory array (:func:`array_source`) or a generator
(:func:`generator_source`, the hook for sampling from a trained network). :func:`iterate_features`
runs an extractor over a source with a tqdm progress bar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from flaxgan import images, xla_cpu
from flaxgan.errors import UserError
from flaxgan.train import sharding
from flaxgan.train.sharding import BATCH_AXIS

__all__ = [
    'Extractor',
    'ImageSource',
    'array_source',
    'folder_source',
    'generator_source',
    'iterate_features',
    'list_images',
    'make_extractor',
    'mirrored',
    'NoImages',
    'class_labels',
]


Detector = Callable[[Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Extractor:
    """``extractor(images uint8 [N, H, W, 3]) -> float32 np.ndarray [N, D]`` plus its identity.

    Attributes:
      fn: the batched host-side function.
      name: detector name (statistics cache keys, logs).
      batch_size: images per call that ``fn`` handles in one device step.
      input_size: the side the detector resizes every image to (Inception 299, VGG16 224), or
        None. Sources of mixed image sizes are resized to it once on the host (the detector's
        own resize then leaves them unchanged), so that one batch can hold every size.
    """

    fn: Callable[[np.ndarray], np.ndarray]
    name: str = 'detector'
    batch_size: int = 64
    input_size: int | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.fn(images)


def make_extractor(detector: Detector, params: Any, *, mesh: Mesh | None = None,
                   batch_size: int = 64, name: str = 'detector',
                   input_size: int | None = None) -> Extractor:
    """Returns an :class:`Extractor`: ``images uint8 [N, H, W, 3] -> float32 [N, D]`` numpy.

    ``jit(shard_map(detector, in_specs=(P(), P('batch')), out_specs=P('batch')))``: params
    replicated once, images run in steps of ``batch_size`` rounded up to a multiple of the device
    count, per-device results gathered in order. A last partial step is padded only to the
    device count times the next power of two (at most log2(steps per device) + 1 programs per
    image size): 8 images on 8 devices run 8, not 64, detector passes.

    Args:
      detector: pure ``(params, images [b, H, W, 3]) -> [b, D]``.
      params: the detector's parameter pytree (numpy or jax arrays).
      mesh: a 1-D mesh with axis ``'batch'``; default all local devices
        (:func:`flaxgan.train.sharding.make_mesh`).
      batch_size: images per device step (all devices together).
      name: the detector's name (cache keys, logs).
      input_size: the side ``detector`` resizes its input to, if it does (see :class:`Extractor`).
    """
    mesh = sharding.make_mesh(local=True) if mesh is None else mesh
    n_dev = mesh.shape[BATCH_AXIS]
    step = -(-batch_size // n_dev) * n_dev
    replicated = jax.device_put(params, NamedSharding(mesh, P()))
    data_sharding = NamedSharding(mesh, P(BATCH_AXIS))

    @xla_cpu.jit
    def sharded(p, x):
        return jax.shard_map(detector, mesh=mesh, in_specs=(P(), P(BATCH_AXIS)),
                             out_specs=P(BATCH_AXIS))(p, x)

    def extract(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        outs = []
        for i in range(0, images.shape[0], step):
            chunk = images[i:i + step]
            pad = _padded_size(chunk.shape[0], n_dev, step) - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            out = sharded(replicated, jax.device_put(chunk, data_sharding))
            outs.append(np.asarray(out)[:len(out) - pad])
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    return Extractor(extract, name, step, input_size)


def _padded_size(n: int, n_dev: int, step: int) -> int:
    """The batch ``n`` images run as: ``n_dev * 2**k >= n``, at most ``step``."""
    size = n_dev
    while size < n:
        size *= 2
    return min(size, step)


# ---------------------------------------------------------------------------------------------
# Image sources.
# ---------------------------------------------------------------------------------------------


class NoImages(UserError, FileNotFoundError):
    """A folder holds no (readable) image; the message names it."""


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A re-iterable stream of uint8 ``[B, H, W, 3]`` batches.

    Attributes:
      name: identifies the content (part of statistics cache keys).
      num_images: how many images one pass yields (``None`` = unbounded, e.g. a generator).
      batches: ``batches(batch_size) -> iterator`` of uint8 NHWC arrays, each ``<= batch_size``.
      cacheable: whether features of this source may be cached on disk (datasets yes,
        generators no).
      resolution: ``(H, W)`` of the images when known (cache key).
      xflip: whether mirrored copies are included (cache key).
      mixed_sizes: the images differ in size (``batches`` then starts a new batch at each
        change of size; :func:`iterate_features` resizes them for the detector).
      skipped: ``'file: reason'`` of each unreadable file left out so far (a folder's corrupt
        or non-image files); ``num_images`` counts only the readable ones once a pass is done.
    """

    name: str
    num_images: int | None
    batches: Callable[[int], Iterator[np.ndarray]]
    cacheable: bool = True
    resolution: tuple[int, int] | None = None
    xflip: bool = False
    mixed_sizes: bool = False
    skipped: list[str] = dataclasses.field(default_factory=list, compare=False)


def _readable_images(files: Sequence[str], skipped: list[str]) -> Iterator[np.ndarray]:
    """Decoded images of ``files``; each that fails to decode is logged, listed in
    ``skipped`` and left out (the dataset builders' rule: skip and count, never abort)."""
    for f in files:
        try:
            yield images.read_image(f)
        except images.UnreadableImage as e:  # its message names the file and the cause
            logging.warning('skipping %s', e)
            skipped.append(str(e))


def _same_shape_batches(arrays: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stacks consecutive images into batches, starting a new batch when the shape changes."""
    buf: list[np.ndarray] = []
    for a in arrays:
        if buf and (len(buf) == batch_size or a.shape != buf[0].shape):
            yield np.stack(buf)
            buf = []
        buf.append(a)
    if buf:
        yield np.stack(buf)


def list_images(directory: str | os.PathLike) -> list[str]:
    """Image files under ``directory`` (recursive, sorted): :func:`flaxgan.images.list_images`.

    Raises:
      NoImages: ``directory`` is not a folder.
    """
    try:
        return images.list_images(directory)
    except FileNotFoundError as e:
        raise NoImages(str(e)) from None


def mirrored(source: ImageSource) -> ImageSource:
    """``source`` followed by its x-flipped copy (the official ``--mirror`` dataset)."""
    if source.num_images is None:
        raise ValueError(f'{source.name}: cannot mirror an unbounded source')

    def batches(bs: int) -> Iterator[np.ndarray]:
        yield from source.batches(bs)
        yield from (np.asarray(b)[:, :, ::-1] for b in source.batches(bs))

    return dataclasses.replace(source, num_images=2 * source.num_images, batches=batches,
                               xflip=True)


def folder_source(directory: str | os.PathLike, max_images: int | None = None,
                  start: int = 0, xflip: bool = False) -> ImageSource:
    """Images of a folder in sorted order (grayscale repeated to RGB), optionally x-flipped too.

    Args:
      directory: folder searched recursively for image files.
      max_images: keep at most this many files (after ``start``).
      start: skip this many files first (e.g. to split one folder into two sets).
      xflip: append the mirrored copy of every image, as the official ``--mirror`` dataset.
    """
    files = list_images(directory)[start:]
    files = files[:max_images] if max_images is not None else files
    if not files:
        raise NoImages(f'{os.fspath(directory)}: no image files found (expected '
                       f'{", ".join(images.IMAGE_EXTENSIONS)})')
    skipped: list[str] = []
    sizes = {}
    for f in files:  # Headers only: drops non-images up front, finds the sizes.
        size = images.image_size(f)
        if size is None:
            logging.warning('skipping %s: not a readable image', f)
            skipped.append(f'{f}: not a readable image')
        else:
            sizes[f] = size
    files = list(sizes)
    if not files:
        raise NoImages(f'{os.fspath(directory)}: none of its {len(skipped)} image files is '
                       f'readable (e.g. {skipped[0]})')
    digest = hashlib.md5()
    for f in files:
        st = os.stat(f)
        digest.update(f'{os.path.relpath(f, directory)}:{st.st_size}:{st.st_mtime_ns}'.encode(
            'utf-8', 'surrogateescape'))  # a file name need not be UTF-8
    name = f'{os.path.basename(os.path.abspath(directory))}-{digest.hexdigest()[:12]}'

    def decoded() -> Iterator[np.ndarray]:
        skipped[num_unopenable:] = []  # each pass lists its own decode failures
        yield from _readable_images(files, skipped)
        if xflip:
            yield from (im[:, ::-1] for im in _readable_images(files, []))

    num_unopenable = len(skipped)
    mixed = len(set(sizes.values())) > 1
    return ImageSource(name=name, num_images=len(files) * (2 if xflip else 1),
                       batches=lambda bs: _same_shape_batches(decoded(), bs),
                       resolution=None if mixed else sizes[files[0]], xflip=xflip,
                       mixed_sizes=mixed, skipped=skipped)


def class_labels(key: jax.Array, n: int, c_dim: int,
                 class_probs: Sequence[float] | None = None) -> jax.Array:
    """``[n, c_dim]`` one-hot classes drawn from ``class_probs`` (``[c_dim]``, e.g. the
    dataset's class frequencies, as the official draws the label of a random training example;
    uniform when None); ``[n, 0]`` for ``c_dim = 0``."""
    if not c_dim:
        return jnp.zeros((n, 0), jnp.float32)
    if class_probs is None:
        return jax.nn.one_hot(jax.random.randint(key, (n,), 0, c_dim), c_dim)
    if len(class_probs) != c_dim:
        raise ValueError(f'expected {c_dim} class probabilities, got {len(class_probs)}')
    logits = jnp.log(jnp.asarray(class_probs, jnp.float32))
    return jax.nn.one_hot(jax.random.categorical(key, logits, shape=(n,)), c_dim)


def array_source(images: np.ndarray, name: str | None = None) -> ImageSource:
    """An in-memory uint8 ``[N, H, W, 3]`` array as a source (not cached unless named)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected uint8 [N, H, W, 3], got {images.dtype} {images.shape}')
    return ImageSource(name=name or 'array', num_images=images.shape[0], cacheable=name is not None,
                       batches=lambda bs: (images[i:i + bs] for i in range(0, len(images), bs)),
                       resolution=images.shape[1:3])


def generator_source(sample: Callable[[jax.Array, int], Any], seed: int = 0,
                     name: str = 'generator') -> ImageSource:
    """Endless batches from a generator -- the hook for evaluating a trained network.

    Args:
      sample: ``sample(key, batch_size) -> uint8 [batch_size, H, W, 3]``, e.g. z ~ N(0, I),
        G(z, c) with the official ``clip(x * 127.5 + 128, 0, 255)`` to uint8. Batch ``i`` gets
        ``fold_in(key(seed), i)``.
      seed: base PRNG seed.
    """
    def batches(bs: int) -> Iterator[np.ndarray]:
        key = jax.random.key(seed)
        for i in itertools.count():
            yield np.asarray(sample(jax.random.fold_in(key, i), bs))

    return ImageSource(name=name, num_images=None, batches=batches, cacheable=False)


# ---------------------------------------------------------------------------------------------
# Streaming.
# ---------------------------------------------------------------------------------------------


def _resized_batches(batches: Iterator[np.ndarray], size: int, batch_size: int
                     ) -> Iterator[np.ndarray]:
    """Batches of any image sizes -> full float32 ``[batch_size, size, size, 3]`` batches, each
    image resized once on the host with the detectors' own bilinear scheme."""
    from flaxgan.metrics import torchfile  # numpy-only resize

    buf: list[np.ndarray] = []
    for batch in batches:
        buf.append(np.asarray(torchfile.resize_bilinear(np.asarray(batch, np.float32), size)))
        while sum(len(b) for b in buf) >= batch_size:
            stacked = np.concatenate(buf)
            yield stacked[:batch_size]
            buf = [stacked[batch_size:]]
    if buf and sum(len(b) for b in buf):
        yield np.concatenate(buf)


def iterate_features(source: ImageSource, extract: Extractor, max_items: int | None = None,
                     desc: str | None = None, progress: bool = True) -> Iterator[np.ndarray]:
    """Yields float32 ``[b, D]`` feature batches of the first ``max_items`` images of ``source``.

    A source of mixed image sizes is resized to the detector's ``input_size`` (when it has one)
    and batched across sizes: one device step per ``batch_size`` images, not per size change.
    """
    total = source.num_images if max_items is None else (
        max_items if source.num_images is None else min(max_items, source.num_images))
    if total is None:
        raise ValueError(f'{source.name}: unbounded source needs max_items')
    done = 0
    with tqdm(total=total, desc=desc or source.name, unit='img', disable=not progress,
              leave=False) as bar:
        batches = source.batches(extract.batch_size)
        if source.mixed_sizes and extract.input_size:
            batches = _resized_batches(batches, extract.input_size, extract.batch_size)
        for images in batches:
            images = images[:total - done]
            feats = extract(images)
            done += feats.shape[0]
            bar.update(feats.shape[0])
            yield feats
            if done >= total:
                return

