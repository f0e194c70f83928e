"""Training input without TensorFlow: prepared TFDS datasets or plain image folders via grain.

    it = make_dataset("celeba_faces/mtcnn_256", "train", batch_size=32, xflip=True)
    batch = next(it)   # {"image": uint8 [32, 256, 256, 3], "label": int32 [32]}

`name_or_dir` is one of
  * a TFDS name (`celeba_faces/mtcnn_256`, optionally `:1.0.0`) found under `data_dir`
    (default: TFDS's, i.e. ~/tensorflow_datasets), read with `tfds.data_source` (ArrayRecord);
  * a prepared dataset folder (the one holding `dataset_info.json`);
  * a plain image folder: images (any depth) resized / centre-cropped to `resolution` (or cut to
    a fixed `crop_box` first, e.g. the face of aligned CelebA); with `folder_labels=True` the
    first-level sub-folders are the classes (sorted names); with `attribute_labels=("Male",
    "Young")` the classes are the combinations of binary CelebA attributes read from
    `attr_file` (default `<folder>/list_attr_celeba.txt`), 2**k of them
    (`attribute_classes`: the first attribute is the most significant bit).

`split` may carry a TFDS-style slice: `"train[:3500]"`, `"train[-500:]"`, `"train[:90%]"`. On a
folder the split name itself is free (a folder is one split) and the slice is taken over the
files in sorted path order, so a held-out part is fixed by the file names.

Batches are dicts of numpy arrays: `image` uint8 `[B, H, W, C]` and `label`: int32 `[B]`
(0 where the dataset has no labels), or with `one_hot=True` float32 `[B, c_dim]` (`[B, 0]`
without labels, the unconditional StyleGAN convention). `dataset_metadata(...)` gives
resolution, channels, c_dim and num_examples, to build the model before reading.

Order and sharding: each process reads the examples `process_index::process_count` (defaults:
`jax.process_index()`, `jax.process_count()`), shuffled with `seed` (a new order per epoch),
repeated `num_epochs` times (None: forever), x-flipped with probability 1/2 when `xflip`
(deterministic per position), batched with `drop_remainder`. With `split_batches=True` (the
training loop's input) processes instead share one stream: every process walks the same
shuffled order (seed `seed` alone), cut into global batches of `batch_size * process_count`,
and takes the `process_index`-th `batch_size` examples of each; the global batches are then
those of one process reading `batch_size * process_count` at a time, however many processes
read them (only this process's examples are decoded).

Mixing sources with weights: when the examples carry a source label (an `image_mix` dataset,
any TFDS dataset with a ClassLabel `label`, or an image folder with `folder_labels=True`),
`source_weights` makes source i supply `w_i / sum(w)` of the examples on average, whatever
the source sizes. The default, `"stored"`, applies the weights an `image_mix` dataset stores in
its metadata (`source_weights`) and samples uniformly over examples otherwise; `None` ignores
stored weights (uniform over examples); a dict `{source name: weight}` overrides them (every
source named, weights >= 0, a weight of 0 leaves that source out). Weighted sampling draws
each source's examples in a shuffled order (reshuffled on every pass over that source, so small
sources are repeated more often), interleaves the sources in proportion to the weights and
shuffles that interleaving within windows of one epoch; an epoch is then as many examples as
this process's shard holds. Sharding is per source (`process_index::process_count` of each
source's examples). Still deterministic given `seed`, and resumable as below.

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
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import crop
from flaxgan import images

__all__ = ["BlockShuffle", "DatasetMetadata", "ImageFolderSource", "attribute_class_labels",
           "attribute_classes", "class_frequencies", "dataset_metadata", "is_prepared_dir",
           "make_dataset", "open_source", "section_kwargs", "source_labels"]

STORED = "stored"  # `source_weights` default: the weights stored with the dataset, if any
ATTR_FILE = "list_attr_celeba.txt"  # `attribute_labels`: a folder's default attribute table


# ----------------------------------------------------------------------------------------------
# Sources.


def attribute_classes(attributes: Sequence[str]) -> tuple[str, ...]:
    """The class names of the 2**k combinations of k binary attributes, in class-index order
    (the first attribute is the most significant bit): `("Male", "Young")` ->
    `("not_Male,not_Young", "not_Male,Young", "Male,not_Young", "Male,Young")`."""
    names = tuple(attributes)
    return tuple(",".join(n if (code >> (len(names) - 1 - j)) & 1 else f"not_{n}"
                          for j, n in enumerate(names))
                 for code in range(2 ** len(names)))


def attribute_class_labels(files: Sequence[str | pathlib.Path], attributes: Sequence[str],
                           table: str | pathlib.Path) -> np.ndarray:
    """int64 class (`attribute_classes` order) of every file, from a CelebA attribute table.

    Args:
      files: image paths; each is looked up by its file name.
      attributes: k attribute names, columns of the table (`Male`, `Young`, ...).
      table: `list_attr_celeba.txt` (count line, names line, `file v1 v2 ...` rows of +-1).

    Raises:
      FileNotFoundError / ValueError: one line naming the table and what is wrong (a missing
        table, an unknown attribute, files it does not list).
    """
    # Lazy: the CelebA builder's reader (and TFDS builders) only when labels are asked for.
    from data_pipelines.builders.celeba_faces.celeba_faces import read_table

    table = pathlib.Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"{table}: attribute table not found (attribute_labels need "
                                f"CelebA's {ATTR_FILE} or attr_file)")
    names, rows = read_table(table, header_lines=2)
    unknown = [a for a in attributes if a not in names]
    if unknown or not attributes:
        raise ValueError(f"{table}: attribute_labels {list(attributes)} must name columns of "
                         f"the table (e.g. {names[:3]}); unknown: {unknown}")
    unlisted = [pathlib.Path(f).name for f in files if pathlib.Path(f).name not in rows]
    if unlisted:
        raise ValueError(f"{table} does not list {len(unlisted)} of the {len(files)} images "
                         f"(e.g. {unlisted[0]})")
    columns = [names.index(a) for a in attributes]
    values = np.array([[rows[pathlib.Path(f).name][c] == "1" for c in columns] for f in files],
                      np.int64).reshape(len(files), len(columns))
    return values @ (2 ** np.arange(len(columns) - 1, -1, -1))


class ImageFolderSource:
    """Random-access source over the images of a folder (grain `RandomAccessDataSource`).

    Each record is `{"image": uint8 [resolution, resolution, 3], "label": int}`; unreadable files
    are found when first read and replaced by the next readable file of the same class (of any
    class if it has none; counted in `self.unreadable`), so that a bad file never stops training.

    Args:
      root: the folder.
      resolution: output side (centre-crop to square, then Lanczos resize); None keeps the
        decoded size (all images must then share it to be batched).
      folder_labels: label = index of the first-level sub-folder (sorted); else 0.
      crop_box: `(left, top, right, bottom)` box as fractions of the image's width and height,
        cut before resizing (then centre-cropped to a square if it is not one); None: none.
      files: `slice` of the sorted file list to serve (a split such as the last 500 files).
      attribute_labels: label = the combination of these binary attributes of `attr_file`
        (`attribute_class_labels`), instead of sub-folders.
      attr_file: the attribute table (default `<root>/list_attr_celeba.txt`).
    """

    def __init__(self, root: str | pathlib.Path, resolution: int | None = None,
                 folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                 files: slice = slice(None), attribute_labels: Sequence[str] = (),
                 attr_file: str | pathlib.Path | None = None):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: expected an image folder")
        files_all = [pathlib.Path(f) for f in images.list_images(self.root)]
        if not files_all:
            raise FileNotFoundError(f"{self.root}: no images "
                                    f"({', '.join(images.IMAGE_EXTENSIONS)})")
        self.files = files = files_all[files]
        if not files:
            raise ValueError(f"{self.root}: the split selects none of its "
                             f"{len(files_all)} images")
        self.resolution = resolution
        self.crop_box = _check_crop_box(crop_box)
        self.class_names: list[str] = []
        self.labels = np.zeros(len(files), np.int64)
        if folder_labels and attribute_labels:
            raise ValueError(f"{self.root}: folder_labels and attribute_labels are two ways of "
                             "labelling; pick one")
        if folder_labels:
            parts = [p.relative_to(self.root).parts for p in files]
            self.class_names = sorted({p[0] for p in parts if len(p) > 1})
            index = {n: i for i, n in enumerate(self.class_names)}
            if any(len(p) == 1 for p in parts):
                raise ValueError(f"{self.root}: folder_labels=True needs every image in a "
                                 "class sub-folder")
            self.labels = np.array([index[p[0]] for p in parts], np.int64)
        if attribute_labels:
            self.class_names = list(attribute_classes(attribute_labels))
            self.labels = attribute_class_labels(files, attribute_labels,
                                                 attr_file or self.root / ATTR_FILE)
        self.unreadable: set[str] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> np.ndarray:
        image = images.read_image(self.files[index])
        if self.crop_box is not None:
            h, w = image.shape[:2]
            left, top, right, bottom = self.crop_box
            image = image[round(top * h):round(bottom * h), round(left * w):round(right * w)]
        if self.resolution is not None:
            image = crop.resize_image(image, self.resolution, resample="lanczos")
        return image

    def _candidates(self, index: int):
        """`index`, then the following files of the same class, then those of other classes."""
        n = len(self.files)
        label = self.labels[int(index) % n]
        for same in (True, False):
            for offset in range(n):
                i = (int(index) + offset) % n
                if (self.labels[i] == label) == same:
                    yield i

    def __getitem__(self, index: int) -> dict[str, Any]:
        for i in self._candidates(index):
            try:
                return {"image": self._load(i), "label": int(self.labels[i])}
            except images.UnreadableImage:
                self.unreadable.add(str(self.files[i]))
        raise images.UnreadableImage(f"{self.root}: no readable image")

    def __repr__(self) -> str:
        return f"ImageFolderSource({str(self.root)!r}, resolution={self.resolution})"


def _check_crop_box(crop_box: Sequence[float] | None) -> tuple[float, ...] | None:
    if crop_box is None:
        return None
    box = tuple(float(v) for v in crop_box)
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise ValueError(f"crop_box must be (left, top, right, bottom) fractions with 0 <= left "
                         f"< right <= 1 and 0 <= top < bottom <= 1, got {crop_box!r}")
    return box


_SPLIT = re.compile(r"^(?P<name>[\w.-]+)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


def parse_split(split: str) -> tuple[str, str | None, str | None]:
    """`"train[-500:]"` -> `("train", "-500", None)`: the split name and its slice bounds
    (integers, or percentages with `%`); a clear error for anything else."""
    match = _SPLIT.match(split.replace(" ", ""))
    if not match:
        raise ValueError(f"split {split!r}: expected NAME or NAME[start:stop] (integers or "
                         "percentages, e.g. train[:3500], train[-500:], train[:90%])")
    return match["name"], match["start"], match["stop"]


def _bound(text: str | None, n: int) -> int | None:
    if text is None:
        return None
    if text.endswith("%"):
        percent = int(text[:-1])
        return round(n * percent / 100) if percent >= 0 else n + round(n * percent / 100)
    return int(text)


def split_slice(split: str, n: int) -> slice:
    """The `slice` of `n` examples that `split` selects (the whole range without brackets)."""
    _, start, stop = parse_split(split)
    return slice(_bound(start, n), _bound(stop, n))


def _folder_source(path: pathlib.Path, split: str, resolution: int | None = None,
                   folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                   attribute_labels: Sequence[str] = (),
                   attr_file: str | pathlib.Path | None = None) -> ImageFolderSource:
    """The image folder's files selected by `split`'s slice (all of them without one)."""
    if folder_labels and attribute_labels:
        raise ValueError(f"{path}: folder_labels and attribute_labels are two ways of "
                         "labelling; pick one")
    files = slice(None)
    if parse_split(split)[1:] != (None, None):
        files = split_slice(split, len(ImageFolderSource(path, folder_labels=folder_labels)))
    return ImageFolderSource(path, resolution, folder_labels, crop_box, files=files,
                             attribute_labels=attribute_labels, attr_file=attr_file)


def is_prepared_dir(path: str | pathlib.Path) -> bool:
    """Whether `path` is a prepared TFDS dataset folder (as opposed to a folder of images)."""
    return (pathlib.Path(path).expanduser() / "dataset_info.json").is_file()


def _builder(name_or_dir: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    path = pathlib.Path(name_or_dir).expanduser()
    if is_prepared_dir(path):
        return tfds.builder_from_directory(str(path))
    return tfds.builder(name_or_dir, data_dir=data_dir, file_format="array_record")


def open_source(name_or_dir: str | pathlib.Path, split: str = "train", *,
                data_dir: str | None = None, resolution: int | None = None,
                folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                attribute_labels: Sequence[str] = (),
                attr_file: str | pathlib.Path | None = None):
    """`(random-access source, DatasetMetadata)` for a TFDS name, prepared dir or image folder
    (`crop_box`, `attribute_labels`, `attr_file`: image folders only, see
    `ImageFolderSource`)."""
    path = pathlib.Path(name_or_dir).expanduser()
    if path.is_dir() and not is_prepared_dir(path):
        source = _folder_source(path, split, resolution, folder_labels, crop_box,
                                tuple(attribute_labels), attr_file)
        first = source[0]["image"]
        meta = DatasetMetadata(resolution=first.shape[0], channels=first.shape[2],
                               c_dim=len(source.class_names), num_examples=len(source),
                               label_names=tuple(source.class_names))
        return source, meta
    if crop_box is not None:
        raise ValueError(f"{name_or_dir}: crop_box applies to image folders; a prepared "
                         "dataset is cropped when it is built")
    if attribute_labels:
        raise ValueError(f"{name_or_dir}: attribute_labels apply to image folders with an "
                         "attribute table; a prepared dataset's classes are its 'label'")
    builder = _builder(str(name_or_dir), data_dir)
    if parse_split(split)[0] not in builder.info.splits:
        raise ValueError(f"{builder.info.full_name}: no split {split!r}; expected one of "
                         f"{sorted(builder.info.splits)}")
    source = builder.as_data_source(split=split)
    return source, _tfds_metadata(builder, split, resolution, len(source))


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
      source_weights: per-class sampling weights stored with the dataset (`image_mix`), in
        `label_names` order; empty when it stores none.
    """

    resolution: int
    channels: int
    c_dim: int
    num_examples: int
    label_names: tuple[str, ...] = ()
    source_weights: tuple[float, ...] = ()


def _tfds_metadata(builder: tfds.core.DatasetBuilder, split: str,
                   resolution: int | None, num_examples: int) -> DatasetMetadata:
    features = builder.info.features
    shape = features["image"].shape
    native = shape[0] if shape[0] == shape[1] else None
    if resolution is None and native is None:
        raise ValueError(f"{builder.info.full_name}: images have no fixed size {shape}; pass "
                         "resolution=")
    names: tuple[str, ...] = ()
    if "label" in features and isinstance(features["label"], tfds.features.ClassLabel):
        names = tuple(features["label"].names)
    stored = (builder.info.metadata or {}).get("source_weights") or {}
    weights = tuple(float(stored[n]) for n in names) if names and set(stored) == set(names) \
        else ()
    return DatasetMetadata(resolution=resolution or native, channels=shape[-1], c_dim=len(names),
                           num_examples=num_examples, label_names=names, source_weights=weights)


def dataset_metadata(name_or_dir: str | pathlib.Path, split: str = "train", *,
                     data_dir: str | None = None, resolution: int | None = None,
                     folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                     attribute_labels: Sequence[str] = (),
                     attr_file: str | pathlib.Path | None = None) -> DatasetMetadata:
    """Resolution, channels, c_dim and size of a dataset, as `make_dataset` will serve it."""
    return open_source(name_or_dir, split, data_dir=data_dir, resolution=resolution,
                       folder_labels=folder_labels, crop_box=crop_box,
                       attribute_labels=attribute_labels, attr_file=attr_file)[1]


def section_kwargs(section: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of `dataset_metadata` and `make_dataset` a `config.data`-like section
    names, the same for training and evaluation.

    Args:
      section: `name` (TFDS name, prepared folder or image folder) and optional `split`
        (default `train`), `data_dir`, `resolution`, `folder_labels`, `crop_box`,
        `attribute_labels`, `attr_file`.

    Returns:
      `{'name_or_dir', 'split', 'data_dir', 'resolution', 'folder_labels', 'crop_box',
      'attribute_labels', 'attr_file'}`.
    """
    return dict(name_or_dir=section["name"], split=section.get("split", "train"),
                data_dir=section.get("data_dir"), resolution=section.get("resolution"),
                folder_labels=section.get("folder_labels", False),
                crop_box=section.get("crop_box"),
                attribute_labels=tuple(section.get("attribute_labels") or ()),
                attr_file=section.get("attr_file"))


def source_labels(name_or_dir: str | pathlib.Path, split: str = "train", *,
                  data_dir: str | None = None, folder_labels: bool = False,
                  attribute_labels: Sequence[str] = (),
                  attr_file: str | pathlib.Path | None = None,
                  chunk: int = 1024) -> np.ndarray:
    """int64 label (source index) of every example of a split, in source order.

    Image folders: from the sub-folder names (or the attribute table). TFDS data: read from the
    records without decoding the images (one pass over the split's files).
    """
    path = pathlib.Path(name_or_dir).expanduser()
    if path.is_dir() and not is_prepared_dir(path):
        return _folder_source(path, split, folder_labels=folder_labels,
                              attribute_labels=tuple(attribute_labels),
                              attr_file=attr_file).labels.copy()
    builder = _builder(str(name_or_dir), data_dir)
    if "label" not in builder.info.features:
        raise ValueError(f"{builder.info.full_name}: no 'label' feature to weight sources by")
    decoders = {k: tfds.decode.SkipDecoding() for k, f in builder.info.features.items()
                if isinstance(f, tfds.features.Image)}  # label only: images stay encoded
    source = builder.as_data_source(split=split, decoders=decoders)
    labels = np.zeros(len(source), np.int64)
    for start in range(0, len(source), chunk):
        keys = list(range(start, min(start + chunk, len(source))))
        labels[start:start + len(keys)] = [int(r["label"]) for r in source.__getitems__(keys)]
    return labels


def class_frequencies(name_or_dir: str | pathlib.Path, split: str = "train", *,
                      data_dir: str | None = None, resolution: int | None = None,
                      folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                      attribute_labels: Sequence[str] = (),
                      attr_file: str | pathlib.Path | None = None,
                      source_weights: str | Mapping[str, float] | None = STORED) -> np.ndarray:
    """float64 `[c_dim]`: the share of each class in the stream `make_dataset` yields with the
    same arguments (sums to 1; `[0]` for an unlabelled dataset).

    With source weights (module doc) that is the normalised weights; otherwise the split's
    label counts. Generated images of a conditional model take their classes from this
    distribution (the official draws the label of a random training example), in training and
    in the metrics, so that fakes and reals are compared class for class.
    """
    source, meta = open_source(name_or_dir, split, data_dir=data_dir, resolution=resolution,
                               folder_labels=folder_labels, crop_box=crop_box,
                               attribute_labels=attribute_labels, attr_file=attr_file)
    if not meta.c_dim:
        return np.zeros((0,), np.float64)
    weights = _resolve_weights(source_weights, meta, str(name_or_dir))
    if weights is None:
        labels = source.labels if isinstance(source, ImageFolderSource) else source_labels(
            name_or_dir, split, data_dir=data_dir)
        weights = np.bincount(labels, minlength=meta.c_dim)[:meta.c_dim]
    weights = np.asarray(weights, np.float64)
    return weights / weights.sum()


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


class _Subset:
    """Random-access view of `source` at `indices` (one source of a weighted mix)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"_Subset({self.source!r}, {len(self.indices)} examples)"


def _resolve_weights(source_weights: str | Mapping[str, float] | None, meta: DatasetMetadata,
                     name: str) -> tuple[float, ...] | None:
    """Per-label weights in label order, or None for uniform sampling over examples."""
    if source_weights is None:
        return None
    if isinstance(source_weights, str):
        if source_weights != STORED:
            raise ValueError(f"expected source_weights={STORED!r}, None or a dict, got "
                             f"{source_weights!r}")
        return meta.source_weights or None
    names = meta.label_names
    if not names:
        raise ValueError(f"{name}: source_weights need labelled sources (an image_mix dataset, a "
                         "ClassLabel 'label' or folder_labels=True)")
    if set(source_weights) != set(names):
        raise ValueError(f"{name}: expected source_weights for exactly {list(names)}, got "
                         f"{sorted(source_weights)}")
    weights = tuple(float(source_weights[n]) for n in names)
    if not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{name}: expected finite weights >= 0, not all 0, got "
                         f"{dict(zip(names, weights, strict=True))}")
    return weights


class BlockShuffle(grain.MapDataset):
    """`parent` with its indices permuted within consecutive blocks of `block_size` (default
    `len(parent)`: a new order every epoch), block b by a permutation drawn from `(seed, b)`.
    Blocks count from the start of every pass over `parent` (indices past its length are later
    passes, as grain's `repeat` reads them); a pass's last, shorter block is permuted within
    itself.

    What grain's `shuffle` (block = epoch) and `WindowShuffleMapDataset` do, at a cost that does
    not depend on the block size: grain permutes one index at a time with a Feistel network that
    cycle-walks a domain of about 2**20 indices, ~5 ms per index in a block of 8 (0.06 ms at
    1,000), several times the cost of reading a 64² example. Here a block's permutation is drawn
    once with NumPy and kept while its examples are read (the most recent few blocks: grain's
    read threads may straddle a block boundary).
    """

    _CACHED_BLOCKS = 8

    def __init__(self, parent: grain.MapDataset, *, seed: int, block_size: int | None = None):
        super().__init__(parent)
        self._block_size = len(parent) if block_size is None else int(block_size)
        if self._block_size < 1:
            raise ValueError(f"expected a block size >= 1, got {self._block_size}")
        self._seed = int(seed)
        self._blocks_per_pass = -(-len(parent) // self._block_size)
        self._permutations: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._parent)

    def __str__(self) -> str:
        return f"BlockShuffle(block_size={self._block_size}, seed={self._seed})"

    def _permutation(self, block: int, size: int) -> np.ndarray:
        """Block `block`'s permutation of its `size` positions (drawn once, then cached)."""
        with self._lock:
            permutation = self._permutations.get(block)
            if permutation is None:
                permutation = np.random.default_rng([self._seed, block]).permutation(size)
                self._permutations[block] = permutation
                if len(self._permutations) > self._CACHED_BLOCKS:
                    del self._permutations[min(self._permutations)]
            return permutation

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        length = len(self._parent)
        passes, position = divmod(index, length)
        block, offset = divmod(position, self._block_size)
        start = passes * length + block * self._block_size
        permutation = self._permutation(passes * self._blocks_per_pass + block,
                                        min(self._block_size, length - block * self._block_size))
        return self._parent[start + int(permutation[offset])]


def _source_seed(seed: int, source: int) -> int:
    return int(np.random.SeedSequence([seed, source]).generate_state(1)[0])


def _weighted_mix(source, labels: np.ndarray, weights: Sequence[float],
                  label_names: Sequence[str], index: int, count: int, shuffle: bool, seed: int,
                  num_epochs: int | None, name: str) -> grain.MapDataset:
    """Examples drawn so that label i makes up `weights[i] / sum(weights)` of the stream."""
    if len(labels) != len(source) or (len(labels) and not 0 <= labels.min() <= labels.max()
                                      < len(weights)):
        raise ValueError(f"{name}: labels do not match the {len(weights)} weighted sources")
    parts, part_weights, epoch = [], [], 0
    for i, weight in enumerate(weights):
        members = np.flatnonzero(labels == i)[index::count]
        epoch += len(members)
        if weight == 0:
            continue
        if not len(members):
            raise ValueError(f"{name}: source {label_names[i]!r} has no examples for process "
                             f"{index} of {count}; give it weight 0 or fewer processes")
        part = grain.MapDataset.source(_Subset(source, members))
        if shuffle:  # a new order on every pass over this source
            part = BlockShuffle(part, seed=_source_seed(seed, i))
        parts.append(part.repeat(None))
        part_weights.append(weight)
    # Deterministic interleaving in the weights' proportions, shuffled within epoch windows.
    ds = grain.MapDataset.mix(parts, part_weights)
    if shuffle:
        ds = BlockShuffle(ds, seed=seed, block_size=epoch)
    if num_epochs is not None:
        ds = ds.slice(slice(0, num_epochs * epoch))
    return ds


def make_dataset(name_or_dir: str | pathlib.Path, split: str = "train", batch_size: int = 32,
                 *, resolution: int | None = None, shuffle: bool = True, seed: int = 0,
                 xflip: bool = False, num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None,
                 data_dir: str | None = None, one_hot: bool = False,
                 folder_labels: bool = False, crop_box: Sequence[float] | None = None,
                 attribute_labels: Sequence[str] = (),
                 attr_file: str | pathlib.Path | None = None,
                 drop_remainder: bool = True,
                 source_weights: str | Mapping[str, float] | None = STORED,
                 split_batches: bool = False,
                 num_threads: int = 4, prefetch: int = 64) -> grain.DatasetIterator:
    """A checkpointable iterator of batches `{"image": uint8 [B, H, W, C], "label": ...}`.

    Args:
      name_or_dir: TFDS name, prepared dataset folder or plain image folder (module doc).
      split: TFDS split, optionally sliced (`train[:3500]`; on image folders the name is free
        and the slice applies to the sorted files).
      batch_size: per-process batch size.
      resolution: output side; default the dataset's (required for folders of mixed sizes).
      shuffle, seed: shuffle (a new order every epoch) with this seed.
      xflip: mirror half of the images (per-position deterministic given `seed`).
      num_epochs: passes over this process's shard; None repeats forever.
      process_index, process_count: this process's shard (or, with `split_batches`, its slice
        of every global batch); default from jax.
      data_dir: TFDS data dir for names.
      one_hot: labels as float32 one-hot `[B, c_dim]` (conditional models) instead of int32.
      folder_labels: image folders only: sub-folders are classes.
      crop_box: image folders only: `(left, top, right, bottom)` fractions cut before resizing.
      attribute_labels, attr_file: image folders only: classes are the combinations of these
        binary attributes of the CelebA table `attr_file` (default
        `<folder>/list_attr_celeba.txt`; `attribute_classes`).
      drop_remainder: drop a last partial batch (only reached with finite `num_epochs`).
      source_weights: sample source (label) i with probability `w_i / sum(w)` (module doc):
        `"stored"` the dataset's stored weights when it has them (`image_mix`), else uniform
        over examples; None uniform over examples; `{source name: weight}` override.
      split_batches: one stream for all processes, each taking its `batch_size` slice of every
        global batch of `batch_size * process_count` (module doc): the global batches, and the
        iterator state, do not depend on the number of processes.
      num_threads, prefetch: grain read threads and prefetch buffer.

    Returns:
      A `grain.DatasetIterator`; `get_state()` / `set_state()` save and restore the position.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    index, count = _process_defaults(process_index, process_count)
    # Examples are sharded over processes, or (split_batches) every process reads them all.
    shard_index, shard_count = (0, 1) if split_batches else (index, count)
    source, meta = open_source(name_or_dir, split, data_dir=data_dir, resolution=resolution,
                               folder_labels=folder_labels, crop_box=crop_box,
                               attribute_labels=attribute_labels, attr_file=attr_file)
    if len(source) < shard_count:
        raise ValueError(f"{name_or_dir}: {len(source)} examples cannot be split over "
                         f"{count} processes")
    weights = _resolve_weights(source_weights, meta, str(name_or_dir))
    if weights is not None:
        labels = source.labels if isinstance(source, ImageFolderSource) else source_labels(
            name_or_dir, split, data_dir=data_dir)
        ds = _weighted_mix(source, labels, weights, meta.label_names, shard_index, shard_count,
                           shuffle, seed, num_epochs, str(name_or_dir))
    else:
        ds = grain.MapDataset.source(source)
        if shard_count > 1:
            ds = ds.slice(slice(shard_index, None, shard_count))
        if shuffle:
            ds = BlockShuffle(ds, seed=seed)
        ds = ds.repeat(num_epochs)
    ds = ds.map(functools.partial(_to_example, resolution=meta.resolution,
                                  channels=meta.channels))
    if xflip:
        ds = ds.random_map(_flip, seed=seed + 1)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                  batch_fn=functools.partial(_collate, c_dim=meta.c_dim, one_hot=one_hot))
    if split_batches and count > 1:
        # Batches i*count .. i*count+count-1 make global batch i; a last incomplete global
        # batch is dropped so that every process yields as many. Lazy: the other processes'
        # batches are never read.
        ds = ds.slice(slice(index, len(ds) // count * count, count))
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(ds.to_iter_dataset(options))
