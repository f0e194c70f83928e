"""CASIA-WebFace faces filtered and cropped by a detection recipe, labelled by identity.

manual_dir: `CASIA-WebFace/<identity>/*.jpg` or `CASIA-WebFace.zip` (holding those folders,
with or without the top folder), or the identity folders directly in manual_dir.

Features: `image` (recipe size), `label` (ClassLabel over the sorted identity folder names,
stored in the dataset's `label.labels.txt`), `file_name` (`identity/file`), `face`
(`box` in source pixels, `score`). One `train` split.

    python -m data_pipelines.build casia_webface --manual_dir=DIR --config=mtcnn_256
"""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from data_pipelines import filters
from data_pipelines.builders import recipe as rc

FOLDER = "CASIA-WebFace"


def identity_sources(manual_dir: pathlib.Path) -> list[rc.ImageSource]:
    """Images two levels deep (`identity/file`) from the folder, the zip, or manual_dir."""
    for folder, zip_name in ((FOLDER, f"{FOLDER}.zip"), (None, None)):
        try:
            sources = rc.find_images(manual_dir, folder, zip_name)
        except rc.MissingManualFiles:
            continue
        sources = [s for s in sources if len(pathlib.PurePath(s.name).parts) == 2]
        if sources:
            return sources
    raise rc.MissingManualFiles(f"casia_webface: {manual_dir} holds no identity folders; "
                                f"expected {FOLDER}/<identity>/*.jpg, {FOLDER}.zip or "
                                "<identity>/*.jpg")


class Builder(tfds.core.GeneratorBasedBuilder):
    """CASIA-WebFace: detection-filtered crops with identity labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = rc.standard_configs(["mtcnn_256", "mtcnn_align_256", "haar_64",
                                           "haar_64_gray", "raw"])
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place CASIA-WebFace in manual_dir as {FOLDER}/<identity>/*.jpg or {FOLDER}.zip.")

    def _info(self) -> tfds.core.DatasetInfo:
        recipe = self.builder_config.recipe
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": rc.image_feature(recipe),
                "label": tfds.features.ClassLabel(),
                "file_name": tfds.features.Text(),
                "face": rc.face_feature(),
            }),
            supervised_keys=("image", "label"),
            homepage="https://arxiv.org/abs/1411.7923",
            metadata=tfds.core.MetadataDict(recipe=recipe.to_json()),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = rc.require(dl_manager.manual_dir, [], "casia_webface")
        sources = identity_sources(manual)
        identities = sorted({pathlib.PurePath(s.name).parts[0] for s in sources})
        self.info.features["label"].names = identities
        return {"train": self._generate_examples(sources)}

    def _generate_examples(self, sources):
        recipe = self.builder_config.recipe
        label = self.info.features["label"]
        report = filters.FilterReport(meta={"builder": self.name,
                                            "config": self.builder_config.name})
        for ex in rc.prepare(sources, recipe, report, desc="casia_webface"):
            face = ex.face
            yield ex.name, {
                "image": rc.to_pil(ex.image),
                "label": label.str2int(pathlib.PurePath(ex.name).parts[0]),
                "file_name": ex.name,
                "face": rc.face_record(face),
            }
        rc.write_report(self.data_dir, "train", report, recipe)
