r"""Per-class attribute accuracy of a conditional Male × Young generator (issue 18 item 5).

    python -m benchmarks.conditional_celeba32 \
        --network=runs/celeba32_cond/snapshots/network-snapshot-000040 \
        --classifiers=celeba32,runs/synth_aug/labeller [--num=1000] [--out=runs/cond_eval.json]

For each class of `experiments/configs/celeba32_cond.py` (0 `not_Male,not_Young`, 1
`not_Male,Young`, 2 `Male,not_Young`, 3 `Male,Young`) `--num` images are generated (seeds 0, 1,
..., ψ = `--trunc`, constant noise) and every attribute classifier says whether each is Male
and whether it is Young (logit > 0). Reported per class: the fraction classified Male as the
class says (`male_ok`), Young as it says (`young_ok`), and both. The same seeds drawn from the
unconditional `--baseline` (the bundled celeba32, where the fine-tuning started: the class
cannot matter there) give the reference: how often an unconditioned face happens to match
each class. A classifier's own held-out accuracy on real faces caps what it can confirm (the
bundled one's `accuracy.json`: Male 87.3%, Young 81.3%, against majority baselines of 57.8% and
80.0%: its Young output is barely better than always saying Young).
`celeba32` as a classifier is the one bundled with the generator
(`flaxgan/pretrained/celeba32/attributes`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from data_pipelines.input import attribute_classes
from experiments.configs.celeba32_cond import ATTRIBUTES
from flaxgan import edit, files, pretrained, sample

_NETWORK = flags.DEFINE_string("network", None, "The conditional generator.", required=True)
_BASELINE = flags.DEFINE_string("baseline", "celeba32", "Unconditional reference generator.")
_CLASSIFIERS = flags.DEFINE_list("classifiers", ["celeba32"], "Attribute classifier folders "
                                 "(a bundled network's name: its matched classifier).")
_NUM = flags.DEFINE_integer("num", 1000, "Images per class.")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi.")
_OUT = flags.DEFINE_string("out", None, "JSON output.")


def class_targets(num_classes: int) -> np.ndarray:
    """bool `[num_classes, 2]`: (Male, Young) of each class (`attribute_classes` order, the
    first attribute the most significant bit)."""
    codes = np.arange(num_classes)
    return np.stack([(codes >> 1) & 1, codes & 1], axis=1).astype(bool)


def images_of(g: sample.LoadedGenerator, seeds: Sequence[int], c: int | None, psi: float
              ) -> np.ndarray:
    """uint8 `[N, H, W, 3]` of `seeds` (class `c`; None: unconditional)."""
    ws = sample.mapping(g, sample.seeds_to_z(g, seeds), c, psi)
    return sample.to_uint8(sample.synthesize(g, ws, noise_mode="const"))


def agreement(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Fractions of images classified as `target` (bool `[2]`: Male, Young) says."""
    ok = predicted == target[None]
    return {"male_ok": float(ok[:, 0].mean()), "young_ok": float(ok[:, 1].mean()),
            "both_ok": float(ok.all(1).mean())}


def classifier_folder(spec: str) -> str:
    """A folder, or a bundled network's matched classifier."""
    folder = spec if pathlib.Path(spec).is_dir() and not (
        pathlib.Path(spec) / "network.json").is_file() else pretrained.matched_classifier(spec)
    if folder is None:
        raise ValueError(f"{spec}: not a classifier folder nor a network with one")
    return str(folder)


def main(argv: Sequence[str]) -> None:
    del argv
    g, base = sample.load(_NETWORK.value), sample.load(_BASELINE.value)
    if g.c_dim != 2 ** len(ATTRIBUTES):
        raise ValueError(f"{_NETWORK.value}: c_dim {g.c_dim}, expected {2 ** len(ATTRIBUTES)}")
    labellers = {spec: edit.classifier_labeller(classifier_folder(spec), ATTRIBUTES)
                 for spec in _CLASSIFIERS.value}
    seeds = range(_NUM.value)
    names, targets = attribute_classes(ATTRIBUTES), class_targets(g.c_dim)
    baseline_images = images_of(base, seeds, None, _TRUNC.value)
    result = {"network": _NETWORK.value, "baseline": _BASELINE.value, "num": _NUM.value,
              "truncation_psi": _TRUNC.value, "classes": {}}
    rows = ["| class | classifier | Male as class | Young as class | both | unconditional "
            "(both) |", "|---|---|---|---|---|---|"]
    for k, (name, target) in enumerate(zip(names, targets, strict=True)):
        images = images_of(g, seeds, k, _TRUNC.value)
        for spec, labeller in labellers.items():
            cond = agreement(labeller.fn(images) > 0, target)
            ref = agreement(labeller.fn(baseline_images) > 0, target)
            result["classes"].setdefault(name, {})[spec] = {"conditional": cond,
                                                            "unconditional": ref}
            rows.append(f"| {k} {name} | {spec} | {100 * cond['male_ok']:.1f} | "
                        f"{100 * cond['young_ok']:.1f} | {100 * cond['both_ok']:.1f} | "
                        f"{100 * ref['both_ok']:.1f} |")
    text = "\n".join(rows) + "\n"
    print(text, end="")
    if _OUT.value:
        files.write_json(_OUT.value, {**result, "table": text}, indent=1)
        print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
