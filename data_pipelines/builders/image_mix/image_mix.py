"""Several image folders in one dataset, labelled by source (e.g. stylised portraits + CelebA).

manual_dir: one sub-folder (or `<name>.zip`) per source; every image below it belongs to that
source. Optional `manual_dir/sources.json`:

    {"sources": [{"name": "arcane", "weight": 2.0},
                 {"name": "celeba", "folder": "img_align_celeba"}]}

choosing, ordering and weighting the sources (`folder` defaults to `name`; weight 1.0). Without
it every sub-folder is a source with weight 1, in sorted order. The label is the source index
(ClassLabel over source names); the per-source weight is stored with each example (`weight`)
and in the dataset metadata (`source_weights`); `data_pipelines.input.make_dataset` applies
them by default, so that source i makes up `w_i / sum(w)` of the training examples whatever its
size (`source_weights=None` samples every example equally, a dict overrides them).

Configs: `haar_64`, `haar_64_gray`, `mtcnn_256`, `resize_64`, `resize_256` (whole images,
centre-cropped), `raw`.

    python -m data_pipelines.build image_mix --manual_dir=DIR --config=haar_64_gray
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import filters
from data_pipelines.builders import recipe as rc

SOURCES_FILE = "sources.json"


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    folder: str
    weight: float = 1.0


def read_sources(manual_dir: pathlib.Path) -> list[Source]:
    """The sources of a manual_dir: `sources.json` if present, else its sub-folders / zips."""
    spec = manual_dir / SOURCES_FILE
    if spec.is_file():
        entries = json.loads(spec.read_text()).get("sources")
        if not entries:
            raise ValueError(f"{spec}: expected {{'sources': [{{'name': ..., 'weight': ...}}]}}")
        sources = [Source(e["name"], e.get("folder", e["name"]), float(e.get("weight", 1.0)))
                   for e in entries]
    else:
        names = sorted({p.stem if p.suffix == ".zip" else p.name for p in manual_dir.iterdir()
                        if p.is_dir() or p.suffix == ".zip"})
        sources = [Source(rc.safe_name(n), n) for n in names]  # folder name as it is on disk
    if not sources:
        raise rc.MissingManualFiles(f"image_mix: {manual_dir} holds no source folders; expected "
                                    f"<source>/ sub-folders (or <source>.zip) or {SOURCES_FILE}")
    bad = [s.name for s in sources if s.weight <= 0]
    if bad:
        raise ValueError(f"{spec}: expected positive weights, got {bad}")
    return sources


def _mix_config(name: str, description: str, recipe: rc.Recipe) -> rc.RecipeConfig:
    return rc.RecipeConfig(name=name, description=description, recipe=recipe, version="1.0.0")


class Builder(tfds.core.GeneratorBasedBuilder):
    """Mixed image folders with per-source labels and weights."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [
        *rc.standard_configs(["haar_64", "haar_64_gray", "mtcnn_256"]),
        _mix_config("resize_64", "Whole images, centre-cropped, box-resized to 64x64.",
                    rc.Recipe(crop="resize", size=64, resample="box")),
        _mix_config("resize_256", "Whole images, centre-cropped, Lanczos-resized to 256x256.",
                    rc.Recipe(crop="resize", size=256, resample="lanczos")),
        *rc.standard_configs(["raw"]),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put one sub-folder per source in manual_dir (optionally {SOURCES_FILE} with names, "
        "folders and weights).")

    def _info(self) -> tfds.core.DatasetInfo:
        recipe = self.builder_config.recipe
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": rc.image_feature(recipe),
                "label": tfds.features.ClassLabel(),
                "weight": np.float32,
                "file_name": tfds.features.Text(),
                "face": rc.face_feature(),
            }),
            supervised_keys=("image", "label"),
            metadata=tfds.core.MetadataDict(recipe=recipe.to_json()),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = rc.require(dl_manager.manual_dir, [], "image_mix")
        sources = read_sources(manual)
        self.info.features["label"].names = [s.name for s in sources]
        self.info.metadata["source_weights"] = {s.name: s.weight for s in sources}
        files = []
        for index, source in enumerate(sources):
            for image in rc.find_images(manual, source.folder, f"{source.folder}.zip"):
                files.append((index, source, image))
        if not files:
            raise rc.MissingManualFiles(f"image_mix: the sources {[s.folder for s in sources]} "
                                        f"in {manual} hold no images")
        return {"train": self._generate_examples(files)}

    def _generate_examples(self, files):
        recipe = self.builder_config.recipe
        report = filters.FilterReport(meta={"builder": self.name,
                                            "config": self.builder_config.name})
        origin = {}
        named = []
        for index, source, image in files:
            name = f"{source.name}/{image.name}"
            origin[name] = (index, source.weight)
            named.append(rc.ImageSource(name, image.read))
        for ex in rc.prepare(named, recipe, report, desc="image_mix"):
            index, weight = origin[ex.name]
            face = ex.face
            yield ex.name, {
                "image": rc.to_pil(ex.image),
                "label": index,
                "weight": np.float32(weight),
                "file_name": ex.name,
                "face": rc.face_record(face),
            }
        rc.write_report(self.data_dir, "train", report, recipe)
