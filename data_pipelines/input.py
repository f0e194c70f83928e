"""Training input without TensorFlow: prepared TFDS datasets or plain image folders via grain.

    it = make_dataset("celeba_faces/mtcnn_256", "train", batch_size=32, xflip=True)
    batch = next(it)   # {"image": uint8 [32, 256, 256, 3], "label": int32 [32]}

`name_or_dir` is one of
  * a TFDS name (`celeba_faces/mtcnn_256`, optionally `:1.0.0`) found under `data_dir`
    (default: TFDS's, i.e. ~/tensorflow_datasets), read with `tfds.data_source` (ArrayRecord);
  * a prepared dataset folder (the one holding `dataset_info.json`);
  * a plain image folder: images (any depth) resized / centre-cropped to `resolution`; with
    `folder_labels=True` the first-level sub-folders are the classes (sorted names).

Batches are dicts of numpy arrays: `image` uint8 `[B, H, W, C]` and `label`: int32 `[B]`
(0 where the dataset has no labels), or with `one_hot=True` float32 `[B, c_dim]` (`[B, 0]`
without labels, the unconditional StyleGAN convention). `dataset_metadata(...)` gives
resolution, channels, c_dim and num_examples, to build the model before reading.

Order and sharding: each process reads the examples `process_index::process_count` (defaults:
`jax.process_index()`, `jax.process_count()`), shuffled with `seed` (a new order per epoch),
repeated `num_epochs` times (None: forever), x-flipped with probability 1/2 when `xflip`
(deterministic per position), batched with `drop_remainder`.

Resuming at the data position: the returned iterator is a `grain.DatasetIterator`;
`state = it.get_state()` is a small JSON-serialisable dict -- store it with the training
checkpoint (e.g. as an Orbax `JsonSave` item, or `json.dumps`) -- and after rebuilding the
iterator with the same arguments call `it.set_state(state)`; the next batch is the one that
would have followed. Resuming with different arguments (batch size, seed, shards) is undefined.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import crop, filters
from data_pipelines.builders.recipe import IMAGE_EXTENSIONS

__all__ = ["DatasetMetadata", "ImageFolderSource", "dataset_metadata", "make_dataset",
           "open_source"]


# ----------------------------------------------------------------------------------------------
# Sources.


class ImageFolderSource:
    """Random-access source over the images of a folder (grain `RandomAccessDataSource`).

    Each record is `{"image": uint8 [resolution, resolution, 3], "label": int}`; unreadable files
    are found when first read and replaced by the next readable file (and counted in
    `self.unreadable`), so that a bad file never stops training.

    Args:
      root: the folder.
      resolution: output side (centre-crop to square, then Lanczos resize); None keeps the
        decoded size (all images must then share it to be batched).
      folder_labels: label = index of the first-level sub-folder (sorted); else 0.
    """

    def __init__(self, root: str | pathlib.Path, resolution: int | None = None,
                 folder_labels: bool = False):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: expected an image folder")
        files = sorted(p for p in self.root.rglob("*")
                       if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"{self.root}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.files = files
        self.resolution = resolution
        self.class_names: list[str] = []
        self.labels = np.zeros(len(files), np.int64)
        if folder_labels:
            parts = [p.relative_to(self.root).parts for p in files]
            self.class_names = sorted({p[0] for p in parts if len(p) > 1})
            index = {n: i for i, n in enumerate(self.class_names)}
            if any(len(p) == 1 for p in parts):
                raise ValueError(f"{self.root}: folder_labels=True needs every image in a "
                                 "class sub-folder")
            self.labels = np.array([index[p[0]] for p in parts], np.int64)
        self.unreadable: set[str] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> np.ndarray:
        image = filters.read_image(self.files[index])
        if self.resolution is not None:
            image = crop.resize_image(image, self.resolution, resample="lanczos")
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(len(self.files)):
            i = (int(index) + offset) % len(self.files)
            try:
                return {"image": self._load(i), "label": int(self.labels[i])}
            except filters.UnreadableImage:
                self.unreadable.add(str(self.files[i]))
        raise filters.UnreadableImage(f"{self.root}: no readable image")

    def __repr__(self) -> str:
        return f"ImageFolderSource({str(self.root)!r}, resolution={self.resolution})"


def _is_prepared_dir(path: pathlib.Path) -> bool:
    return (path / "dataset_info.json").is_file()


def _builder(name_or_dir: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    path = pathlib.Path(name_or_dir).expanduser()
    if _is_prepared_dir(path):
        return tfds.builder_from_directory(str(path))
    return tfds.builder(name_or_dir, data_dir=data_dir, file_format="array_record")


def open_source(name_or_dir: str | pathlib.Path, split: str = "train", *,
                data_dir: str | None = None, resolution: int | None = None,
                folder_labels: bool = False):
    """`(random-access source, DatasetMetadata)` for a TFDS name, prepared dir or image folder."""
    path = pathlib.Path(name_or_dir).expanduser()
    if path.is_dir() and not _is_prepared_dir(path):
        source = ImageFolderSource(path, resolution, folder_labels)
        first = source[0]["image"]
        meta = DatasetMetadata(resolution=first.shape[0], channels=first.shape[2],
                               c_dim=len(source.class_names), num_examples=len(source),
                               label_names=tuple(source.class_names))
        return source, meta
    builder = _builder(str(name_or_dir), data_dir)
    if split not in builder.info.splits:
        raise ValueError(f"{builder.info.full_name}: no split {split!r}; expected one of "
                         f"{sorted(builder.info.splits)}")
    source = builder.as_data_source(split=split)
    return source, _tfds_metadata(builder, split, resolution)


# ----------------------------------------------------------------------------------------------
# Metadata.


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What the model needs to know about a dataset.

    Attributes:
      resolution: image side of the batches (after `resolution=` resizing), pixels.
      channels: 1 or 3.
      c_dim: number of classes (0: unconditional).
      num_examples: examples in the split (before per-process sharding).
      label_names: class names (empty without labels).
    """

    resolution: int
    channels: int
    c_dim: int
    num_examples: int
    label_names: tuple[str, ...] = ()


def _tfds_metadata(builder: tfds.core.DatasetBuilder, split: str,
                   resolution: int | None) -> DatasetMetadata:
    features = builder.info.features
    shape = features["image"].shape
    native = shape[0] if shape[0] == shape[1] else None
    if resolution is None and native is None:
        raise ValueError(f"{builder.info.full_name}: images have no fixed size {shape}; pass "
                         "resolution=")
    names: tuple[str, ...] = ()
    if "label" in features and isinstance(features["label"], tfds.features.ClassLabel):
        names = tuple(features["label"].names)
    return DatasetMetadata(resolution=resolution or native, channels=shape[-1], c_dim=len(names),
                           num_examples=builder.info.splits[split].num_examples,
                           label_names=names)


def dataset_metadata(name_or_dir: str | pathlib.Path, split: str = "train", *,
                     data_dir: str | None = None, resolution: int | None = None,
                     folder_labels: bool = False) -> DatasetMetadata:
    """Resolution, channels, c_dim and size of a dataset, as `make_dataset` will serve it."""
    return open_source(name_or_dir, split, data_dir=data_dir, resolution=resolution,
                       folder_labels=folder_labels)[1]


# ----------------------------------------------------------------------------------------------
# Pipeline.


def _to_example(record: dict, resolution: int, channels: int) -> dict[str, Any]:
    """A decoded record -> `{"image": uint8 [R, R, C], "label": int}`."""
    image = np.asarray(record["image"])
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] != channels:
        raise ValueError(f"expected {channels}-channel images, got shape {image.shape}")
    if image.shape[0] != resolution or image.shape[1] != resolution:
        image = crop.resize_image(image, resolution, resample="lanczos")
    return {"image": image, "label": int(record.get("label", 0))}


def _flip(example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {**example, "image": example["image"][:, ::-1]}
    return example


def _collate(examples: Sequence[dict[str, Any]], c_dim: int, one_hot: bool) -> dict:
    images = np.stack([np.ascontiguousarray(e["image"]) for e in examples])
    labels = np.array([e["label"] for e in examples], np.int32)
    if one_hot:
        return {"image": images, "label": np.eye(c_dim, dtype=np.float32)[labels]
                if c_dim else np.zeros((len(examples), 0), np.float32)}
    return {"image": images, "label": labels}


def _process_defaults(index: int | None, count: int | None) -> tuple[int, int]:
    if index is None or count is None:
        import jax

        index = jax.process_index() if index is None else index
        count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"expected 0 <= process_index < process_count, got {index}, {count}")
    return index, count


def make_dataset(name_or_dir: str | pathlib.Path, split: str = "train", batch_size: int = 32,
                 *, resolution: int | None = None, shuffle: bool = True, seed: int = 0,
                 xflip: bool = False, num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None,
                 data_dir: str | None = None, one_hot: bool = False,
                 folder_labels: bool = False, drop_remainder: bool = True,
                 num_threads: int = 4, prefetch: int = 64) -> grain.DatasetIterator:
    """A checkpointable iterator of batches `{"image": uint8 [B, H, W, C], "label": ...}`.

    Args:
      name_or_dir: TFDS name, prepared dataset folder or plain image folder (module doc).
      split: TFDS split (ignored for image folders).
      batch_size: per-process batch size.
      resolution: output side; default the dataset's (required for folders of mixed sizes).
      shuffle, seed: shuffle (a new order every epoch) with this seed.
      xflip: mirror half of the images (per-position deterministic given `seed`).
      num_epochs: passes over this process's shard; None repeats forever.
      process_index, process_count: this process's shard; default from jax.
      data_dir: TFDS data dir for names.
      one_hot: labels as float32 one-hot `[B, c_dim]` (conditional models) instead of int32.
      folder_labels: image folders only: sub-folders are classes.
      drop_remainder: drop a last partial batch (only reached with finite `num_epochs`).
      num_threads, prefetch: grain read threads and prefetch buffer.

    Returns:
      A `grain.DatasetIterator`; `get_state()` / `set_state()` save and restore the position.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    index, count = _process_defaults(process_index, process_count)
    source, meta = open_source(name_or_dir, split, data_dir=data_dir, resolution=resolution,
                               folder_labels=folder_labels)
    if len(source) < count:
        raise ValueError(f"{name_or_dir}: {len(source)} examples cannot be split over "
                         f"{count} processes")
    ds = grain.MapDataset.source(source)
    if count > 1:
        ds = ds.slice(slice(index, None, count))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.map(functools.partial(_to_example, resolution=meta.resolution,
                                  channels=meta.channels))
    if xflip:
        ds = ds.random_map(_flip, seed=seed + 1)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                  batch_fn=functools.partial(_collate, c_dim=meta.c_dim, one_hot=one_hot))
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(ds.to_iter_dataset(options))
