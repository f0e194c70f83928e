"""CelebA (aligned-and-cropped) faces filtered and cropped by a detection recipe.

manual_dir (as in the official download):
  img_align_celeba/*.jpg  or  img_align_celeba.zip
  list_attr_celeba.txt                 (required; defines which images belong to the dataset)
  list_landmarks_align_celeba.txt      (optional: the 5 annotated points)
  list_eval_partition.txt              (optional: 0/1/2 -> train/validation/test; else one
                                        `train` split)

Features: `image` (recipe size), `file_name`, `attributes` (the 40 CelebA attributes as bools),
`landmarks` float32 `[5, 2]` (x, y) in output-image pixels -- the annotation when the file is
present, else the detector's (MTCNN), else -1 --, and `face` (`box` in source pixels, `score`;
zeros without a detector).

    python -m data_pipelines.build celeba_faces --manual_dir=DIR --config=mtcnn_256
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from data_pipelines import filters
from data_pipelines.builders import recipe as rc

ATTRIBUTES_FILE = "list_attr_celeba.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLITS = {0: "train", 1: "validation", 2: "test"}


def read_table(path: pathlib.Path, header_lines: int) -> tuple[list[str], dict[str, list[str]]]:
    """CelebA annotation text: `header_lines` of header (the last holds column names, if any),
    then `file v1 v2 ...` rows -> (column names, {file: values})."""
    lines = path.read_text().splitlines()
    names = lines[header_lines - 1].split() if header_lines else []
    rows = {}
    for number, line in enumerate(lines[header_lines:], start=header_lines + 1):
        parts = line.split()
        if not parts:
            continue
        if names and len(parts) != len(names) + 1:
            raise ValueError(f"{path}:{number}: expected {len(names) + 1} fields, got "
                             f"{len(parts)}")
        rows[parts[0]] = parts[1:]
    return names, rows


class Builder(tfds.core.GeneratorBasedBuilder):
    """CelebA faces: detection-filtered crops with attributes and landmarks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = rc.standard_configs(["mtcnn_256", "mtcnn_align_256", "haar_64",
                                           "haar_64_gray", "raw"])
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download CelebA 'Align&Cropped Images' and the annotations; place in manual_dir: "
        f"img_align_celeba/ (or img_align_celeba.zip), {ATTRIBUTES_FILE}, optionally "
        f"{LANDMARKS_FILE} and {PARTITION_FILE}.")

    def _info(self) -> tfds.core.DatasetInfo:
        recipe = self.builder_config.recipe
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": rc.image_feature(recipe),
                "file_name": tfds.features.Text(),
                "attributes": {name: np.bool_ for name in _DEFAULT_ATTRIBUTES},
                "landmarks": tfds.features.Tensor(shape=(5, 2), dtype=np.float32),
                "face": rc.face_feature(),
            }),
            supervised_keys=None,
            homepage="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
            metadata=tfds.core.MetadataDict(recipe=recipe.to_json()),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = rc.require(dl_manager.manual_dir, ["img_align_celeba|img_align_celeba.zip",
                                                    ATTRIBUTES_FILE], "celeba_faces")
        names, attributes = read_table(manual / ATTRIBUTES_FILE, header_lines=2)
        if names != _DEFAULT_ATTRIBUTES:
            raise ValueError(f"{manual / ATTRIBUTES_FILE}: expected the 40 CelebA attribute "
                             f"names {_DEFAULT_ATTRIBUTES[:3]}..., got {names[:3]}...")
        landmarks = {}
        if (manual / LANDMARKS_FILE).is_file():
            _, landmarks = read_table(manual / LANDMARKS_FILE, header_lines=2)
        sources = rc.find_images(manual, "img_align_celeba", "img_align_celeba.zip",
                                 expected="CelebA aligned jpgs")
        by_name = {pathlib.PurePath(s.name).name: s for s in sources}
        split_of = {name: "train" for name in attributes}
        if (manual / PARTITION_FILE).is_file():
            _, partition = read_table(manual / PARTITION_FILE, header_lines=0)
            split_of = {name: SPLITS[int(v[0])] for name, v in partition.items()
                        if name in attributes}
        missing = [n for n in attributes if n not in by_name]
        if missing:
            logging.warning("celeba_faces: %d annotated images are not in the manual_dir "
                            "(first: %s)", len(missing), missing[0])
        splits = {}
        for name in sorted(by_name):
            if name in split_of:
                splits.setdefault(split_of[name], []).append(by_name[name])
        return {split: self._generate_examples(split, files, attributes, landmarks)
                for split, files in sorted(splits.items())}

    def _generate_examples(self, split, files, attributes, landmarks):
        recipe = self.builder_config.recipe
        report = filters.FilterReport(meta={"builder": self.name,
                                            "config": self.builder_config.name})
        for ex in rc.prepare(files, recipe, report, desc=f"celeba_faces/{split}"):
            name = pathlib.PurePath(ex.name).name
            if name in landmarks:
                points = ex.to_output(np.asarray(landmarks[name], np.float64).reshape(5, 2))
            elif ex.face is not None and ex.face.landmarks is not None:
                points = ex.to_output(ex.face.landmarks)
            else:
                points = np.full((5, 2), -1.0, np.float32)
            face = ex.face
            yield name, {
                "image": rc.to_pil(ex.image),
                "file_name": name,
                "attributes": {a: v == "1" for a, v in zip(_DEFAULT_ATTRIBUTES, attributes[name],
                                                            strict=True)},
                "landmarks": points.astype(np.float32),
                "face": rc.face_record(face),
            }
        rc.write_report(self.data_dir, split, report, recipe)


_DEFAULT_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young").split()
