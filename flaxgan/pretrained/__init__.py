"""Networks trained by flaxgan that ship inside the package: loadable by name, offline.

    from flaxgan import sample
    sample.pretrained()                      # [PretrainedModel(name='celeba32', ...), ...]
    g = sample.load("celeba32")              # the bundled G_ema, float32
    python -m experiments.generate --network=celeba32 --seeds=0-15 --grid=4
    python -m experiments.train --config=... --config.resume_pkl=celeba32   # fine-tune it

Each model is a folder here in the format of `flaxgan.sample.export` (`network.json` with the
official constructor kwargs, one official-format state_dict `.npz` per network: `G_ema` and
`D`; fine-tuning starts G from G_ema) plus `model.json`: what it is (`PretrainedModel`'s
fields). A model may also carry `attributes/`: a CelebA attribute classifier
(`flaxgan.metrics.attributes` format) trained on the same crop of the same faces, which
`experiments.directions` and the editing benchmark use when no `--classifier` is given.
Parameters are stored in float16 to keep the package small and restored to float32
on load (tests bound the difference to the float32 network); buffers (`w_avg`, constant
noise, filters) stay float32.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

__all__ = ["PretrainedModel", "ROOT", "available", "find", "matched_classifier"]

ROOT = pathlib.Path(__file__).resolve().parent
MODEL_JSON = "model.json"
REFERENCE_NPZ = "float32_reference.npz"  # images of the float32 network, for the parity test
ATTRIBUTES_DIR = "attributes"  # optional matched attribute classifier (classifier.{json,npz})


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """A bundled network.

    Attributes:
      name: what `sample.load` takes, e.g. `celeba32`.
      path: its export folder.
      resolution: image side, pixels.
      architecture: official generator class and preset, e.g. `StyleGAN2 (skip), ...`.
      dataset: the training images (source, crop, split).
      kimg: thousands of real images shown in training.
      metrics: `{name: value}` measured on the final G_ema (name says the protocol).
      training: how it was trained (config, hardware, time).
      licence: the terms of the training data and of the weights.
      float16_max_abs_error: largest difference between the images of the stored (float16
        parameters) and the float32 network, [-1, 1] scale, measured when bundled.
    """

    name: str
    path: pathlib.Path
    resolution: int
    architecture: str
    dataset: str
    kimg: float
    metrics: dict[str, float]
    training: str
    licence: str
    float16_max_abs_error: float

    @property
    def attribute_classifier(self) -> pathlib.Path | None:
        """The folder of its matched CelebA attribute classifier, or None if it has none."""
        return matched_classifier(str(self.path))

    @classmethod
    def from_folder(cls, folder: pathlib.Path) -> PretrainedModel:
        info: dict[str, Any] = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(cls)} - {"name", "path"}
        return cls(name=folder.name, path=folder, **{k: info[k] for k in fields})


def available() -> list[PretrainedModel]:
    """The bundled models, sorted by name."""
    return [PretrainedModel.from_folder(p) for p in sorted(ROOT.iterdir())
            if (p / MODEL_JSON).is_file()]


def find(name: str) -> PretrainedModel | None:
    """The bundled model called `name` (a bare name, not a path), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = ROOT / name
    return PretrainedModel.from_folder(folder) if (folder / MODEL_JSON).is_file() else None


def matched_classifier(network: str) -> pathlib.Path | None:
    """The attribute classifier that travels with `network` (a bundled model's name or any
    model folder holding `attributes/`), or None.

    A path that exists wins over a bundled name, as in `sample.load`.
    """
    folder = pathlib.Path(network)
    if not folder.exists():
        model = find(network)
        folder = model.path if model else folder
    candidate = folder / ATTRIBUTES_DIR
    return candidate if folder.is_dir() and (candidate / "classifier.json").is_file() else None

