"""CelebA attribute records for training the `ls` metric's classifier.

Random-access sources of `{'image': uint8 [R, R, 3], 'attributes': float32 [40]}`:

  * `FolderAttributes`: images of a folder labelled by CelebA's `list_attr_celeba.txt`;
  * `TfdsAttributes`: a prepared `celeba_faces` dataset, whose records carry `attributes`;
  * `open_data(...)`: the training part and the held-out part of either;
  * `batches(source, ...)`: grain batches of a source; `positive_rates`: per-attribute priors.

    train, held = open_data("../shared/data/celeba_small", resolution=64, holdout=0.1)
    for batch in batches(train, 32, shuffle=True, seed=0, num_epochs=1):
        ...  # batch['image'] uint8 [32, 64, 64, 3], batch['attributes'] float32 [32, 40]
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
from absl import logging

from data_pipelines import crop
from data_pipelines import input as data_input
from data_pipelines.builders.celeba_faces.celeba_faces import read_table
from flaxgan import images
from flaxgan.metrics.attributes import ATTRIBUTES

__all__ = [
    "FolderAttributes",
    "Subset",
    "TfdsAttributes",
    "batches",
    "open_data",
    "positive_rates",
]


class FolderAttributes:
    """Images of a folder labelled by a CelebA `list_attr_celeba.txt` (rows of missing files
    are skipped and counted in `missing`).

    Args:
      root: the image folder.
      attr_file: the attribute table (default `<root>/list_attr_celeba.txt`).
      resolution: output side (centre-crop to square, then resize).
    """

    def __init__(self, root: str | pathlib.Path, attr_file: str | pathlib.Path | None,
                 resolution: int):
        self.root = pathlib.Path(root)
        table = pathlib.Path(attr_file) if attr_file else self.root / "list_attr_celeba.txt"
        if not table.is_file():
            raise FileNotFoundError(f"{table}: attribute table not found (CelebA "
                                    "list_attr_celeba.txt: count line, names line, file rows)")
        names, rows = read_table(table, header_lines=2)
        if tuple(names) != ATTRIBUTES:
            raise ValueError(f"{table}: expected the 40 CelebA attribute names "
                             f"{list(ATTRIBUTES[:3])}..., got {names[:3]}...")
        self.files, labels = [], []
        self.missing = 0
        for name in sorted(rows):
            if (self.root / name).is_file():
                self.files.append(self.root / name)
                labels.append([v == "1" for v in rows[name]])
            else:
                self.missing += 1
        if not self.files:
            raise FileNotFoundError(f"{self.root}: none of the {len(rows)} images named in "
                                    f"{table} is there")
        self.labels = np.asarray(labels, np.float32)
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        image = images.read_image(self.files[i])
        return {"image": crop.resize_image(image, self.resolution),
                "attributes": self.labels[i]}


class TfdsAttributes:
    """A TFDS split (or prepared folder) whose records carry the `attributes` dict.

    Args:
      name_or_dir: TFDS name or prepared dataset folder.
      split: the split.
      data_dir: TFDS data directory.
      resolution: output side.
    """

    def __init__(self, name_or_dir: str, split: str, data_dir: str | None, resolution: int):
        self.source, _ = data_input.open_source(name_or_dir, split, data_dir=data_dir,
                                                resolution=resolution)
        first = self.source[0]
        if "attributes" not in first:
            raise ValueError(f"{name_or_dir}: records have no 'attributes' feature (expected "
                             "a celeba_faces dataset)")
        absent = [a for a in ATTRIBUTES if a not in first["attributes"]]
        if absent:
            raise ValueError(f"{name_or_dir}: attributes lack {absent[:3]}")
        self.names = ATTRIBUTES
        self.resolution = resolution
        self.labels = None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        record = self.source[i]
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
        if image.shape[:2] != (self.resolution, self.resolution):
            image = crop.resize_image(image, self.resolution)
        attrs = np.asarray([bool(record["attributes"][a]) for a in self.names], np.float32)
        return {"image": image, "attributes": attrs}


class Subset:
    """Examples `start:stop` of a source."""

    def __init__(self, source: Any, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.source[self.start + i]


def open_data(data: str, resolution: int, *, attr_file: str | None = None,
              data_dir: str | None = None, split: str = "train", eval_split: str | None = None,
              holdout: float = 0.1, max_images: int | None = None) -> tuple[Subset, Subset]:
    """`(train part, held-out part)` of attribute records at `resolution`.

    Args:
      data: a folder of CelebA images (with its attribute table), a TFDS name or a prepared
        dataset folder.
      resolution: image side.
      attr_file: a folder's attribute table (default `<data>/list_attr_celeba.txt`).
      data_dir: TFDS data directory.
      split: TFDS split to train on.
      eval_split: TFDS split held out (default: the last `holdout` of `split`).
      holdout: held-out fraction when there is no `eval_split`.
      max_images: use at most this many examples of each split.

    Raises:
      FileNotFoundError / ValueError: one line naming the data and what is wrong.
    """
    path = pathlib.Path(data).expanduser()
    if path.is_dir() and not data_input.is_prepared_dir(path):
        if eval_split:
            raise ValueError("--eval_split applies to TFDS data; a folder uses --holdout")
        source = FolderAttributes(path, attr_file, resolution)
        if source.missing:
            logging.warning("%s: %d rows of the attribute table have no image", path,
                            source.missing)
        held = None
    else:
        source = TfdsAttributes(data, split, data_dir, resolution)
        held = TfdsAttributes(data, eval_split, data_dir, resolution) if eval_split else None
    n = min(len(source), max_images) if max_images else len(source)
    if held is not None:
        return Subset(source, 0, n), Subset(held, 0, min(len(held), max_images or len(held)))
    n_held = int(round(n * holdout))
    if n_held < 1 or n - n_held < 1:
        raise ValueError(f"{data}: {n} examples cannot be split with holdout={holdout}")
    return Subset(source, 0, n - n_held), Subset(source, n - n_held, n)


def batches(source: Any, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            num_epochs: int | None = 1, drop_remainder: bool = False, num_threads: int = 2
            ) -> Iterator[dict[str, np.ndarray]]:
    """Iterator of `{'image': uint8 [B, R, R, 3], 'attributes': float32 [B, 40]}`.

    Args:
      source: a random-access source (`__len__`, `__getitem__`).
      batch_size: examples per batch.
      shuffle: shuffle (each epoch) with `seed`.
      num_epochs: passes over the source; None repeats without end.
      drop_remainder: drop a last, short batch.
      num_threads: decoding threads.
    """
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = data_input.BlockShuffle(ds, seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * batch_size)
    return iter(ds.to_iter_dataset(options))


def positive_rates(source: Any, num_threads: int = 2) -> np.ndarray:
    """Fraction of positives per attribute, float32 `[40]`: from a folder's attribute table,
    else by reading the records."""
    inner = source.source if isinstance(source, Subset) else source
    if getattr(inner, "labels", None) is not None and isinstance(source, Subset):
        return inner.labels[source.start:source.stop].mean(0)
    total, count = 0.0, 0
    for batch in batches(source, 256, num_threads=num_threads):
        total = total + batch["attributes"].sum(0)
        count += len(batch["attributes"])
    return np.asarray(total / max(count, 1), np.float32)
