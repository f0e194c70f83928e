"""Generated faces as a TFDS dataset (ArrayRecord), written by `flaxgan.synth`.

Two kinds, one `train` split each; the examples come from the config (`SyntheticConfig.examples`,
`flaxgan.synth` reads them from its resumable chunk files), not from a manual_dir:

  * `mix` (style-mixing auto-labelled sets, `experiments.synth_dataset mix`): `image`,
    `attributes` (the source's labels, one bool per name), `source_seed`, `dest_seed`, `layers`
    (the ws indices taken from the source, int32 `[L]`), `psi`;
  * `export` (augmentation exports, `experiments.synth_dataset export`): `image`, `seed`,
    `attributes` (our classifier's, when one ran), `scores` (one float32 per quality score:
    `face_score`, `d_score`, `realism`, ...; NaN = not computed), `psi`, and `label` (a
    ClassLabel, only for conditional generators: `make_dataset(..., one_hot=True)` then
    serves the class).

Both are read like the other prepared datasets (`data_pipelines.input.make_dataset(folder)`,
`tfds.builder_from_directory(folder)`); the generation settings are in the metadata.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

KINDS = ("mix", "export")


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a synthetic dataset holds.

    Attributes:
      kind: `mix` or `export`.
      resolution, channels: image shape.
      attributes: label names (bools per example).
      num_layers: `mix`: length of `layers`.
      scores: `export`: quality-score names (float32 each).
      class_names: `export` of a conditional generator: the classes (`label`); empty otherwise.
    """

    kind: str
    resolution: int
    channels: int = 3
    attributes: tuple[str, ...] = ()
    num_layers: int = 0
    scores: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"expected kind in {KINDS}, got {self.kind!r}")


class SyntheticConfig(tfds.core.BuilderConfig):
    """A config carrying the layout, the examples and the generation settings (metadata)."""

    def __init__(self, *, layout: Layout,
                 examples: Callable[[], Iterator[tuple[int, Mapping[str, Any]]]],
                 settings: Mapping[str, Any] | None = None, **kwargs):
        super().__init__(version="1.0.0", **kwargs)
        self.layout, self.examples, self.settings = layout, examples, dict(settings or {})


def features(layout: Layout) -> tfds.features.FeaturesDict:
    """The feature dict of a layout (see the module doc)."""
    image = tfds.features.Image(shape=(layout.resolution, layout.resolution, layout.channels),
                                encoding_format="png")
    out: dict[str, Any] = {"image": image, "psi": np.float32,
                           "attributes": {name: np.bool_ for name in layout.attributes}}
    if layout.kind == "mix":
        out.update(source_seed=np.int64, dest_seed=np.int64,
                   layers=tfds.features.Tensor(shape=(layout.num_layers,), dtype=np.int32))
    else:
        out.update(seed=np.int64, scores={name: np.float32 for name in layout.scores})
        if layout.class_names:
            out["label"] = tfds.features.ClassLabel(names=list(layout.class_names))
    return tfds.features.FeaturesDict(out)


class Builder(tfds.core.GeneratorBasedBuilder):
    """Generated faces (see the module doc); build with a `SyntheticConfig`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=features(config.layout), supervised_keys=None, disable_shuffling=True,
            metadata=tfds.core.MetadataDict(settings=config.settings))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download or read from a manual_dir
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield from self.builder_config.examples()


def build(data_dir: str, name: str, layout: Layout,
          examples: Callable[[], Iterator[tuple[int, Mapping[str, Any]]]],
          settings: Mapping[str, Any] | None = None) -> str:
    """Writes the dataset `data_dir/synthetic_faces/<name>/1.0.0` (ArrayRecord) unless it is
    already complete there; returns that folder."""
    config = SyntheticConfig(name=name, layout=layout, examples=examples, settings=settings,
                             description=f"flaxgan synthetic faces ({layout.kind})")
    builder = Builder(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    return str(builder.data_dir)


def class_names(c_dim: int) -> Sequence[str]:
    """`class_0`, ..., the ClassLabel names of a conditional generator's classes."""
    return [f"class_{i}" for i in range(c_dim)]
