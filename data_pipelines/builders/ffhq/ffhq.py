"""FFHQ (already aligned 1024x1024 faces) resized to 256, 512 or 1024.

manual_dir: `images1024x1024/` (the official folder, with or without its `00000/` ... sub-folders)
or `images1024x1024.zip`. Configs `256`, `512` (Lanczos, antialiased) and `1024` (stored as
decoded); non-square inputs are centre-cropped. Unreadable files are skipped and counted in
`filter_report.json`. Features: `image`, `file_name`. One `train` split.

    python -m data_pipelines.build ffhq --manual_dir=DIR --config=256
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_pipelines import filters
from data_pipelines.builders import recipe as rc

FOLDER = "images1024x1024"


def _config(size: int) -> rc.RecipeConfig:
    recipe = rc.Recipe(crop="resize", size=size, resample="lanczos")
    return rc.RecipeConfig(name=str(size), description=f"FFHQ at {size}x{size} (Lanczos).",
                           recipe=recipe, version="1.0.0")


class Builder(tfds.core.GeneratorBasedBuilder):
    """FFHQ at 256/512/1024."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [_config(256), _config(512), _config(1024)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download FFHQ {FOLDER} (github.com/NVlabs/ffhq-dataset); place {FOLDER}/ or "
        f"{FOLDER}.zip in manual_dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        recipe = self.builder_config.recipe
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": rc.image_feature(recipe),
                "file_name": tfds.features.Text(),
            }),
            homepage="https://github.com/NVlabs/ffhq-dataset",
            metadata=tfds.core.MetadataDict(recipe=recipe.to_json()),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = rc.require(dl_manager.manual_dir, [f"{FOLDER}|{FOLDER}.zip"], "ffhq")
        sources = rc.find_images(manual, FOLDER, f"{FOLDER}.zip", expected="FFHQ pngs")
        return {"train": self._generate_examples(sources)}

    def _generate_examples(self, sources):
        recipe = self.builder_config.recipe
        report = filters.FilterReport(meta={"builder": self.name,
                                            "config": self.builder_config.name})
        for ex in rc.prepare(sources, recipe, report, desc="ffhq"):
            yield ex.name, {"image": rc.to_pil(ex.image), "file_name": ex.name}
        rc.write_report(self.data_dir, "train", report, recipe)
