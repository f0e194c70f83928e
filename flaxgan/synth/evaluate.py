"""A labelled image dataset judged by an attribute predictor (the study's table).

For each dataset — a style-mixing auto-labelled set, an export, real CelebA (a prepared
`celeba_faces` dataset, or a folder of CelebA images with `list_attr_celeba.txt`) — the
attribute classifier predicts every image (logit > 0 = present) and the predictions are compared
with the dataset's labels, per attribute:

  `accuracy`      fraction of images where prediction and label agree;
  `confusion`     `[[tn, fp], [fn, tp]]` (rows: label absent / present; columns: predicted
                  absent / present);
  `label_rate`, `predicted_rate`: fractions labelled / predicted present;

plus `no_face`: how many images MTCNN finds no face in (resized as `quality.best_faces`).
On a style-mixing set the accuracy says how often the source's label survives the mixing;
on real CelebA it is the classifier's own accuracy, the reference to read the others against.
An export whose labels are this very classifier's predictions (its settings record the
labeller's `edit.classifier_fingerprint`) agrees 100% by construction: its report says
`circular: true` and `table` flags it in one line instead of passing it off as a measurement.
`table` prints several datasets (e.g. the sets of several generators) side by side.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from flaxgan import edit
from flaxgan.errors import InvalidArgument
from flaxgan.synth import quality

__all__ = ["LabelledData", "evaluate_dataset", "open_labelled", "scores", "table"]

ATTR_FILE = "list_attr_celeba.txt"


@dataclasses.dataclass(frozen=True)
class LabelledData:
    """Images with binary labels.

    Attributes:
      name: what it is (table column).
      names: the label names.
      num_images: how many images one pass yields.
      batches: `batch_size -> iterator of (uint8 [B, H, W, 3], bool [B, len(names)])`.
      labelled_by: `edit.classifier_fingerprint` of the classifier whose predictions on these
        very images are the labels (an export's); "" for labels of any other origin.
    """

    name: str
    names: tuple[str, ...]
    num_images: int
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]
    labelled_by: str = ""


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    image = image[..., None] if image.ndim == 2 else image
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def _batched(get: Callable[[int], tuple[np.ndarray, np.ndarray]], count: int
             ) -> Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]:
    def batches(size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, count, size):
            items = [get(i) for i in range(start, min(start + size, count))]
            yield np.stack([x for x, _ in items]), np.stack([y for _, y in items])
    return batches


def open_labelled(data: str | os.PathLike, *, name: str | None = None, split: str = "train",
                  data_dir: str | None = None, attr_file: str | None = None,
                  crop_box: Sequence[float] | None = None, resolution: int | None = None,
                  max_images: int | None = None) -> LabelledData:
    """A labelled dataset: a prepared TFDS dataset (folder or name) whose records carry an
    `attributes` dict of bools (`synthetic_faces`, `celeba_faces`), or a folder of CelebA
    images labelled by `attr_file` (default `<folder>/list_attr_celeba.txt`).

    Args:
      data: the dataset.
      name: its table column (default: the folder's or dataset's name).
      split: TFDS split (slices allowed, `train[-500:]`; on an image folder the slice of its
        listed files in sorted order, as training's folder splits).
      data_dir: TFDS data directory for names.
      attr_file, crop_box, resolution: image folders: the attribute table, the face box cut
        first (`(left, top, right, bottom)` fractions, as training's `crop_box`) and the side
        it is resized to (the classifier resizes anything anyway).
      max_images: at most this many images.
    Raises:
      InvalidArgument: a missing dataset or table, or records without `attributes`.
    """
    from data_pipelines import input as data_input
    from data_pipelines.builders.celeba_faces.celeba_faces import read_table

    path = pathlib.Path(data).expanduser()
    label = name or (path.name if path.name not in ("1.0.0", "") else path.parent.name)
    if path.is_dir() and not data_input.is_prepared_dir(path):
        table = pathlib.Path(attr_file) if attr_file else path / ATTR_FILE
        if not table.is_file():
            raise InvalidArgument(f"{table}: attribute table not found (a folder of images "
                                  f"needs CelebA's {ATTR_FILE} or --attr_file)")
        try:
            names, rows = read_table(table, header_lines=2)
            source = data_input.ImageFolderSource(path, resolution, crop_box=crop_box)
        except (ValueError, FileNotFoundError) as e:
            raise InvalidArgument(str(e)) from None
        files = [i for i, f in enumerate(source.files) if f.name in rows]
        if not files:
            raise InvalidArgument(f"{path}: none of its images is listed in {table}")
        try:  # a folder is one split; a slice applies to its listed files in sorted order
            files = files[data_input.split_slice(split, len(files))][:max_images]
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        get = lambda i: (_rgb(source[files[i]]["image"]),  # noqa: E731
                         np.array([v == "1" for v in rows[source.files[files[i]].name]]))
        return LabelledData(label, tuple(names), len(files), _batched(get, len(files)))
    try:
        source, _ = data_input.open_source(str(data), split, data_dir=data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise InvalidArgument(f"{data}: not a labelled dataset ({str(e).splitlines()[0]})"
                              ) from None
    except Exception as e:  # TFDS's DatasetNotFoundError and kin: a name it does not know
        raise InvalidArgument(f"{data}: no such folder or prepared dataset "
                              f"({type(e).__name__})") from None
    first = source[0]
    if not isinstance(first.get("attributes"), Mapping):
        raise InvalidArgument(f"{data}: its records have no 'attributes' labels")
    names = tuple(first["attributes"])
    count = len(source) if max_images is None else min(len(source), max_images)
    get = lambda i: (_rgb(source[i]["image"]),  # noqa: E731
                     np.array([bool(source[i]["attributes"][n]) for n in names]))
    return LabelledData(label, names, count, _batched(get, count),
                        labelled_by=_labelled_by(str(data), data_dir))


def _labelled_by(data: str, data_dir: str | None) -> str:
    """The classifier fingerprint an export's settings record for its labels ("" for other
    datasets: a style-mixing set's labels are its sources', not its images')."""
    import tensorflow_datasets as tfds

    from data_pipelines import input as data_input

    path = pathlib.Path(data).expanduser()
    builder = (tfds.builder_from_directory(str(path)) if data_input.is_prepared_dir(path)
               else tfds.builder(data, data_dir=data_dir))
    settings = (builder.info.metadata or {}).get("settings") or {}
    scorers = settings.get("scorers") if isinstance(settings, Mapping) else None
    return str(scorers.get("classifier") or "") if isinstance(scorers, Mapping) else ""


def scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Agreement of bool predictions and labels `[N]`: `accuracy`, `confusion` `[[tn, fp],
    [fn, tp]]`, `label_rate`, `predicted_rate`."""
    p, y = np.asarray(predicted, bool), np.asarray(labels, bool)
    tn, fp = int(np.sum(~y & ~p)), int(np.sum(~y & p))
    fn, tp = int(np.sum(y & ~p)), int(np.sum(y & p))
    n = max(len(y), 1)
    return {"accuracy": (tp + tn) / n, "confusion": [[tn, fp], [fn, tp]],
            "label_rate": (tp + fn) / n, "predicted_rate": (tp + fp) / n}


def evaluate_dataset(data: LabelledData, classifier: Any, *,
                     detector: quality.Detector | None = None,
                     attributes: Sequence[str] | None = None, batch_size: int = 64,
                     progress: bool = True) -> dict[str, Any]:
    """The classifier's agreement with `data`'s labels, and MTCNN's no-face count.

    Args:
      data: `open_labelled(...)`.
      classifier: an `attributes.AttributeClassifier` or its folder.
      detector: MTCNN's `detect_batch` (None: `no_face` is not counted).
      attributes: the labels to evaluate (default: every label the classifier predicts).
      batch_size: images per step.
    Returns:
      `{"name", "num_images", "no_face" (None without a detector), "attributes": {name:
      scores(...)}, "not_predicted": [labels the classifier has no output for], "circular":
      the labels are this classifier's own predictions (module doc)}`.
    """
    clf = edit.load_classifier(classifier)
    known = [n for n in data.names if n in clf.attributes]
    if attributes is not None:
        wanted = [edit.resolve_attribute(a) for a in attributes]
        absent = [a for a in wanted if a not in data.names]
        if absent:
            raise InvalidArgument(f"{data.name} has no label {', '.join(absent)} (it has "
                                  f"{', '.join(data.names)})")
        known = [a for a in wanted if a in known]
    if not known:
        raise InvalidArgument(f"{data.name}: none of its labels ({', '.join(data.names)}) is "
                              "an attribute the classifier predicts")
    labeller = edit.classifier_labeller(clf, known, batch_size=batch_size)
    columns = [data.names.index(n) for n in known]
    predicted, labels, no_face = [], [], 0
    with tqdm(total=data.num_images, desc=data.name, unit="img", disable=not progress) as bar:
        for images, y in data.batches(batch_size):
            predicted.append(np.asarray(labeller.fn(images)) > 0)
            labels.append(y[:, columns])
            if detector is not None:
                no_face += int(np.isnan(quality.best_faces(images, detector)[0]).sum())
            bar.update(len(images))
    predicted, labels = np.concatenate(predicted), np.concatenate(labels)
    return {"name": data.name, "num_images": int(len(labels)),
            "no_face": no_face if detector is not None else None,
            "attributes": {n: scores(predicted[:, j], labels[:, j])
                           for j, n in enumerate(known)},
            "not_predicted": [n for n in data.names if n not in clf.attributes],
            "circular": bool(data.labelled_by)
            and data.labelled_by == edit.classifier_fingerprint(clf)}


def table(reports: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: a column per dataset, rows images / no face found / accuracy (%) per
    attribute: those every dataset has when they share any (side by side), else the union
    (`-` where a dataset lacks one); circular datasets are marked `*` and explained in one
    line under the table."""
    names = list(dict.fromkeys(a for r in reports for a in r["attributes"]))
    shared = [a for a in names if all(a in r["attributes"] for r in reports)]
    names = shared or names
    head = "| | " + " | ".join(r["name"] + ("*" if r.get("circular") else "")
                                for r in reports) + " |"
    rows = [head, "|---" * (len(reports) + 1) + "|",
            "| images | " + " | ".join(str(r["num_images"]) for r in reports) + " |",
            "| no face found | " + " | ".join("-" if r["no_face"] is None else str(r["no_face"])
                                             for r in reports) + " |"]
    for a in names:
        cells = [f"{100 * r['attributes'][a]['accuracy']:.1f}" if a in r["attributes"] else "-"
                 for r in reports]
        rows.append(f"| {a} accuracy (%) | " + " | ".join(cells) + " |")
    if any(r.get("circular") for r in reports):
        rows.append("\n\\* labelled by this very classifier: 100% by construction, not a "
                    "measurement (evaluate it with another classifier)")
    return "\n".join(rows) + "\n"
