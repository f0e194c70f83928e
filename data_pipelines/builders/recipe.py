"""Shared machinery of the face-dataset builders: recipes, image sources, the prepare loop.

A `Recipe` says how one source image becomes one example: which detector runs (`mtcnn`, `haar`
or none), how the kept face is cropped (`margin` facenet crop, `haar` crop, FFHQ `align`, whole
image `resize`, or `none` = the decoded image as is), the output size, filter, grayscale, and
the `FilterPolicy`. Builder configs (`RecipeConfig`) carry one recipe each; the standard ones
are `STANDARD_RECIPES` (`mtcnn_256`, `mtcnn_align_256`, `haar_64`, `haar_64_gray`, `raw`).

`prepare(sources, recipe, report)` decodes, detects (MTCNN on batches of same-sized images),
filters, crops, and yields `Prepared` records; bad files are counted in the report, never
raised. Builders write the report beside the dataset with `write_report`.

Sources: `find_images(manual_dir, folder, zip_name)` lists the images of a folder or of a zip
(`ImageSource(name, read)`), sorted by name.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image
from tqdm import tqdm

from data_pipelines import crop, filters
from data_pipelines.detection.face import Face
from flaxgan import images
from flaxgan.errors import UserError

__all__ = [
    "Recipe",
    "RecipeConfig",
    "STANDARD_RECIPES",
    "ImageSource",
    "Prepared",
    "MissingManualFiles",
    "find_images",
    "safe_name",
    "require",
    "prepare",
    "to_pil",
    "write_report",
    "image_feature",
]

DETECTORS = (None, "mtcnn", "haar")
# `data_pipelines.detection.mtcnn.RECALL_MODES`, repeated so that a recipe is checked without
# importing JAX (a test keeps the two equal).
MTCNN_RECALLS = ("reference", "high")
CROPS = ("margin", "haar", "align", "resize", "none")


class MissingManualFiles(UserError, FileNotFoundError):
    """The manual_dir lacks files a builder needs; the message lists what is expected."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a source image becomes an example.

    Attributes:
      detector: `mtcnn`, `haar` or None (no detection: every readable image is kept).
      crop: `margin` (box + `margin` pixels, facenet), `haar` (box + `margin` x side), `align`
        (FFHQ-style from MTCNN landmarks), `resize` (whole image, centre-cropped square) or
        `none` (the decoded image unchanged; `size` must be None).
      size: output side in pixels, or None for `crop='none'`.
      margin: see `crop`.
      square: grow the detected box to a square before the margin (`margin` crop only).
      grayscale: store one luma channel.
      resample: Pillow filter name (`crop.RESAMPLE`).
      policy: keep/drop thresholds and the multiple-face policy.
      min_face_size: detector's smallest face side, pixels.
      mtcnn_recall: `MTCNN(recall=...)`: `reference` (the reference detector's faces) or `high`
        (those plus the faces its verified second chances find); MTCNN only.
      batch_size: images decoded and detected together.
      encoding: `png` (lossless) or `jpeg` for the stored image.
    """

    detector: str | None = None
    crop: str = "none"
    size: int | None = None
    margin: float = 0.0
    square: bool = False
    grayscale: bool = False
    resample: str = "bilinear"
    policy: filters.FilterPolicy = filters.FilterPolicy()
    min_face_size: int = 20
    mtcnn_recall: str = "reference"
    batch_size: int = 64
    encoding: str = "png"

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"expected detector in {DETECTORS}, got {self.detector!r}")
        if self.crop not in CROPS:
            raise ValueError(f"expected crop in {CROPS}, got {self.crop!r}")
        if (self.crop == "none") != (self.size is None):
            raise ValueError("crop='none' keeps the source size (size=None); other crops need "
                             f"a size, got crop={self.crop!r} size={self.size}")
        if self.crop in ("margin", "haar", "align") and self.detector is None:
            raise ValueError(f"crop={self.crop!r} needs a detector")
        if self.crop == "align" and self.detector != "mtcnn":
            raise ValueError("crop='align' needs MTCNN landmarks (detector='mtcnn')")
        if self.mtcnn_recall not in MTCNN_RECALLS:
            raise ValueError(f"expected mtcnn_recall in {MTCNN_RECALLS}, got {self.mtcnn_recall!r}")
        if self.mtcnn_recall != "reference" and self.detector != "mtcnn":
            raise ValueError(f"mtcnn_recall={self.mtcnn_recall!r} needs detector='mtcnn'")
        crop.resample_filter(self.resample)

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int | None, int | None, int]:
        return (self.size, self.size, self.channels)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["policy"] = dataclasses.asdict(self.policy)
        return out


STANDARD_RECIPES: dict[str, tuple[str, Recipe]] = {
    "mtcnn_256": (
        "MTCNN (thresholds 0.6/0.7/0.7), largest face, box + 50 px margin, bilinear 256x256.",
        Recipe(detector="mtcnn", crop="margin", size=256, margin=50.0, resample="bilinear"),
    ),
    "mtcnn_align_256": (
        "MTCNN, largest face, FFHQ-style alignment from its 5 landmarks, 256x256.",
        Recipe(detector="mtcnn", crop="align", size=256),
    ),
    "haar_64": (
        "OpenCV Haar frontal-face cascade, largest face, box area-resized to 64x64.",
        Recipe(detector="haar", crop="haar", size=64, resample="box"),
    ),
    "haar_64_gray": (
        "As haar_64, stored as one grayscale (luma) channel.",
        Recipe(detector="haar", crop="haar", size=64, resample="box", grayscale=True),
    ),
    "raw": (
        "No detection: every readable image, decoded and stored unchanged (RGB).",
        Recipe(),
    ),
}


class RecipeConfig(tfds.core.BuilderConfig):
    """A TFDS builder config carrying a `Recipe`."""

    def __init__(self, *, recipe: Recipe, **kwargs):
        super().__init__(**kwargs)
        self.recipe = recipe


def standard_configs(names: Sequence[str], version: str = "1.0.0") -> list[RecipeConfig]:
    """`RecipeConfig`s for names of `STANDARD_RECIPES`."""
    return [RecipeConfig(name=n, description=STANDARD_RECIPES[n][0],
                         recipe=STANDARD_RECIPES[n][1], version=version) for n in names]


def image_feature(recipe: Recipe) -> tfds.features.Image:
    """The TFDS image feature for a recipe's output."""
    return tfds.features.Image(shape=recipe.shape, encoding_format=recipe.encoding)


# ----------------------------------------------------------------------------------------------
# Sources.


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """One source image: its name (relative path, `/`-separated) and a reader of its bytes."""

    name: str
    read: Callable[[], bytes]


def face_feature() -> tfds.features.FeaturesDict:
    """The detected face of an example: `box` (x0, y0, x1, y1) and detector `score`."""
    return tfds.features.FeaturesDict({
        "box": tfds.features.Tensor(shape=(4,), dtype=np.float32), "score": np.float32})


def face_record(face: Face | None) -> dict[str, np.ndarray]:
    """`face_feature` values; zeros when the recipe keeps images without a detection."""
    return {"box": np.asarray(face.box if face else np.zeros(4), np.float32),
            "score": np.float32(face.score if face else 0.0)}


def safe_name(name: str) -> str:
    """`name` as valid UTF-8 text: the bytes of a file name that are not UTF-8 (which Python
    keeps as lone surrogates, unwritable to a dataset or JSON) become `\\xNN` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _listed(path: pathlib.Path) -> bool:
    """An image file, or an image-named symlink that resolves to nothing (a loop, a dangling
    link): listed so that reading it fails and the report counts it as unreadable."""
    return images.is_image_file(path.name) and (path.is_file() or (path.is_symlink()
                                                        and not path.exists()))


def _folder_images(folder: pathlib.Path) -> list[ImageSource]:
    files = sorted(p for p in folder.rglob("*") if _listed(p))
    return [ImageSource(safe_name(p.relative_to(folder).as_posix()), p.read_bytes)
            for p in files]


def _zip_images(path: pathlib.Path, folder: str | None) -> list[ImageSource]:
    """Images of a zip; when every member sits under `folder/`, that prefix is dropped."""
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist()
                       if not n.endswith("/") and images.is_image_file(n))
    prefix = f"{folder}/" if folder and names and all(n.startswith(f"{folder}/")
                                                      for n in names) else ""

    def reader(member: str) -> Callable[[], bytes]:
        def read() -> bytes:
            with zipfile.ZipFile(path) as zf:
                return zf.read(member)
        return read

    return [ImageSource(n[len(prefix):], reader(n)) for n in names]


def find_images(manual_dir: pathlib.Path, folder: str | None = None,
                zip_name: str | None = None, *, expected: str = "") -> list[ImageSource]:
    """Images of `manual_dir/folder` (recursively) or else of `manual_dir/zip_name`.

    With `folder=None` the images of `manual_dir` itself are listed.

    Raises:
      MissingManualFiles: neither exists (the message names both and `expected`).
    """
    manual_dir = pathlib.Path(manual_dir)
    root = manual_dir / folder if folder else manual_dir
    if root.is_dir():
        return _folder_images(root)
    if zip_name and (manual_dir / zip_name).is_file():
        return _zip_images(manual_dir / zip_name, folder)
    wanted = " or ".join(x for x in (f"{folder}/" if folder else None, zip_name) if x)
    raise MissingManualFiles(f"{manual_dir}: expected {wanted}" + (f" ({expected})" if expected
                                                                  else ""))


def require(manual_dir: pathlib.Path | None, names: Sequence[str], builder: str) -> pathlib.Path:
    """Checks that manual_dir exists and holds each of `names` (a name may be `a|b`: either).

    Raises:
      MissingManualFiles: one line naming every expected file that is missing.
    """
    if manual_dir is None or not pathlib.Path(manual_dir).is_dir():
        raise MissingManualFiles(f"{builder}: manual_dir {manual_dir} does not exist; expected "
                                 f"it to hold {', '.join(names)}")
    manual_dir = pathlib.Path(manual_dir)
    missing = [n for n in names if not any((manual_dir / a).exists() for a in n.split("|"))]
    if missing:
        raise MissingManualFiles(f"{builder}: {manual_dir} lacks {', '.join(missing)} "
                                 f"(expected: {', '.join(names)})")
    return manual_dir


# ----------------------------------------------------------------------------------------------
# The prepare loop.


@dataclasses.dataclass
class Prepared:
    """A kept example: output image, the chosen face, and the source -> output affine.

    Attributes:
      name: source name.
      image: uint8 `[size, size, C]` (or the source size for `crop='none'`).
      face: chosen detection (None without a detector).
      affine: float64 `[2, 3]` mapping source pixel coordinates to output coordinates.
      source_shape: `(H, W)` of the decoded source.
    """

    name: str
    image: np.ndarray
    face: Face | None
    affine: np.ndarray
    source_shape: tuple[int, int]

    def to_output(self, points: np.ndarray) -> np.ndarray:
        """Source `[N, 2]` (x, y) points in output pixel coordinates, float32."""
        return crop.transform_points(points, self.affine)


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _detector(recipe: Recipe) -> Callable[[list[np.ndarray]], list[list[Face]]] | None:
    if recipe.detector == "mtcnn":
        from data_pipelines.detection import mtcnn
        return mtcnn.MTCNN(min_face_size=recipe.min_face_size,
                           recall=recipe.mtcnn_recall).detect_batch
    if recipe.detector == "haar":
        from data_pipelines.detection import haar
        return haar.HaarCascade(min_face_size=recipe.min_face_size).detect_batch
    return None


def _crop(image: np.ndarray, face: Face | None, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Output image and source -> output affine for one kept image."""
    h, w = image.shape[:2]
    if recipe.crop == "none":
        out, affine = image, _IDENTITY
    elif recipe.crop == "resize":
        side = min(h, w)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        out = crop.resize_image(image, recipe.size, resample=recipe.resample)
        affine = crop.box_affine(box, recipe.size)
    elif recipe.crop == "margin":
        box = crop.margin_box(face.box, h, w, margin=recipe.margin, square=recipe.square)
        out = crop.margin_crop(image, face.box, margin=recipe.margin, size=recipe.size,
                               resample=recipe.resample, square=recipe.square)
        affine = crop.box_affine(box, recipe.size)
    elif recipe.crop == "haar":
        box = crop.haar_box(face.box, h, w, margin=recipe.margin)
        out = crop.haar_crop(image, face.box, size=recipe.size, margin=recipe.margin,
                             resample=recipe.resample)
        affine = crop.box_affine(box, recipe.size)
    else:  # align
        out, affine = crop.align_face(image, face.landmarks, size=recipe.size, return_affine=True)
    if recipe.grayscale:
        out = crop.to_grayscale(out)
    return np.ascontiguousarray(out), affine


def _decode_chunk(chunk: Sequence[ImageSource], report: filters.FilterReport
                  ) -> list[tuple[ImageSource, np.ndarray]]:
    decoded = []
    for source in chunk:
        try:
            decoded.append((source, filters.read_image(source.read(), name=source.name)))
        except (filters.UnreadableImage, OSError) as e:
            logging.warning("skipping %s", e)
            report.add(source.name, filters.unreadable(e))
    return decoded


def prepare(sources: Iterable[ImageSource], recipe: Recipe, report: filters.FilterReport,
            *, desc: str = "prepare", total: int | None = None) -> Iterator[Prepared]:
    """Decodes, detects, filters and crops `sources`; yields the kept examples in order.

    Every source is recorded in `report` (kept or dropped with its reason); unreadable files
    and crops that fail are dropped and counted, never raised.
    """
    detect = _detector(recipe)
    sources = list(sources) if total is None else sources
    total = len(sources) if total is None else total
    chunk: list[ImageSource] = []
    with tqdm(total=total, desc=desc, unit="img", mininterval=2.0) as bar:
        def flush() -> Iterator[Prepared]:
            decoded = _decode_chunk(chunk, report)
            faces = detect([im for _, im in decoded]) if detect else [None] * len(decoded)
            for (source, image), found in zip(decoded, faces, strict=True):
                decision = filters.decide(found, image.shape, recipe.policy)
                if decision.keep:
                    try:
                        out, affine = _crop(image, decision.face, recipe)
                    except ValueError as e:  # e.g. a box outside the image
                        decision = filters.Decision("too_small", decision.face, detail=str(e))
                report.add(source.name, decision)
                if decision.keep:
                    yield Prepared(source.name, out, decision.face, affine, image.shape[:2])
            bar.update(len(chunk))
            chunk.clear()

        for source in sources:
            chunk.append(source)
            if len(chunk) >= recipe.batch_size:
                yield from flush()
        if chunk:
            yield from flush()


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 `[H, W, 1|3]` -> a PIL image TFDS encodes without TensorFlow."""
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


REPORT_NAME = "filter_report.json"


def write_report(data_dir: str | pathlib.Path, split: str, report: filters.FilterReport,
                 recipe: Recipe) -> pathlib.Path:
    """Adds one split's report to `data_dir/filter_report.json` and logs its summary.

    Raises:
      ValueError: when the split kept no image (TFDS cannot write an empty split).
    """
    path = pathlib.Path(data_dir) / REPORT_NAME
    data = json.loads(path.read_text()) if path.is_file() else {"recipe": recipe.to_json(),
                                                                 "splits": {}}
    data["splits"][split] = report.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    logging.info("%s split %s: %s", path.parent, split, report.summary())
    if report.kept == 0:
        raise ValueError(f"split {split}: no image kept ({report.summary()}); see {path}")
    return path
