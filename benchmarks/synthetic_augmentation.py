r"""Does adding synthetic faces help an attribute classifier? (issue 18 item 4)

    python -m benchmarks.synthetic_augmentation --outdir=runs/synth_aug [--seeds=0,1] \
        [--steps=800] [--num_synthetic=3500]

Design (stated so that the figures can be read for what they are):

* Real faces: the 4,000 aligned CelebA images of ../shared/data/celeba_small cut and resized
  exactly as the `celeba32` generator's training data (the face box at 32², Lanczos;
  `experiments/configs/celeba32.py`). Files 001001–004500 (3,500) are the training split;
  004501–005000 (500) are held out: neither the generator, nor the labelling classifier, nor
  any compared classifier ever sees them, and every accuracy below is measured on them.
* Labeller: a classifier trained on the 3,500 training faces only (`--labeller_seed`, not one
  of the compared seeds: it does not share an initialisation or a data order with them). It
  is *not* the classifier bundled with celeba32, which was trained on files up to 004600 and
  so saw 100 of the held-out faces.
* Synthetic faces: `python -m experiments.synth_dataset export --network=celeba32
  --classifier=<labeller>` (seeds 0, 1, ...; ψ = `--trunc`; MTCNN face and landmark filter,
  D score recorded), each image's 40 labels = the labeller's predictions (logit > 0). These
  labels are pseudo-labels: whatever the synthetic faces add, they can only teach what the
  labeller already predicts (distillation on generated images), including its errors.
* Compared: the same classifier recipe (`flaxgan.metrics.attributes`, the StyleGAN2-D trunk of
  the bundled one: 32², channel_base 2048, channel_max 128, resnet; Adam 0.002, β (0.9,
  0.99), x-flips, priors-initialised output bias from the *real* training rates) trained for
  the same `--steps` of batch 32 on (a) real faces only, (b) 16 real + 16 synthetic faces per
  batch; same seeds (initialisation, flips, real-data order). (b) therefore sees each real
  face half as often: the comparison is at equal compute, not at equal real epochs.
* Reported: held-out accuracy per attribute and the mean over the 40, as the mean over the
  seeds with the spread (max − min) over them, next to the majority-class baseline and the
  labeller's own held-out accuracy.

Writes `OUTDIR/results.json` and `OUTDIR/results.md` (the table of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import jax
import numpy as np
import optax
from absl import app, flags, logging

from flaxgan import files
from flaxgan.metrics import attributes
from flaxgan.train import sharding

_OUTDIR = flags.DEFINE_string("outdir", "runs/synth_aug", "Work and output folder.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds of the compared classifiers.")
_LABELLER_SEED = flags.DEFINE_integer("labeller_seed", 100, "Seed of the labelling classifier.")
_STEPS = flags.DEFINE_integer("steps", 800, "Training steps of every classifier.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch (half real, half synthetic in (b)).")
_NUM_SYNTHETIC = flags.DEFINE_integer("num_synthetic", 3500, "Synthetic faces exported.")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi of the synthetic faces.")
_NETWORK = flags.DEFINE_string("network", "celeba32", "Generator of the synthetic faces.")

FACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_small"
HELD_OUT = 500  # files 004501-005000, as celeba32's held-out split
CLASSIFIER = attributes.ClassifierConfig(resolution=32, channel_base=2048, channel_max=128,
                                         architecture="resnet")


# ------------------------------------------------------------------------------------ data


def real_faces(cache: pathlib.Path) -> dict[str, np.ndarray]:
    """`{'train_image', 'train_attr', 'held_image', 'held_attr'}`: the celeba32 face crops
    (uint8 `[N, 32, 32, 3]`) and their 40 CelebA attributes (float32 {0, 1}), files
    001001–004500 / 004501–005000; decoded once and cached in `cache`."""
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from data_pipelines import input as data_input
    from data_pipelines.builders.celeba_faces.celeba_faces import read_table
    from experiments.configs.celeba32 import CELEBA_FACE_BOX

    source, _ = data_input.open_source(str(FACES), "train", resolution=32,
                                       crop_box=CELEBA_FACE_BOX)
    names, rows = read_table(FACES / "list_attr_celeba.txt", header_lines=2)
    if tuple(names) != attributes.ATTRIBUTES:
        raise ValueError(f"{FACES}: unexpected attribute columns")
    image = np.stack([source[i]["image"] for i in range(len(source))])
    attr = np.array([[v == "1" for v in rows[f.name]] for f in source.files], np.float32)
    out = {"train_image": image[:-HELD_OUT], "train_attr": attr[:-HELD_OUT],
           "held_image": image[-HELD_OUT:], "held_attr": attr[-HELD_OUT:]}
    files.save_npz(cache, out)
    return out


def read_export(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """An export's images uint8 `[N, 32, 32, 3]` and labels float32 `[N, 40]` (the labeller's
    predictions, `attributes.ATTRIBUTES` order)."""
    from data_pipelines import input as data_input

    source, _ = data_input.open_source(dataset, "train")
    images, labels = [], []
    for i in range(len(source)):
        record = source[i]
        images.append(np.asarray(record["image"], np.uint8))
        labels.append([bool(record["attributes"][a]) for a in attributes.ATTRIBUTES])
    return np.stack(images), np.asarray(labels, np.float32)


def batches(parts: Sequence[tuple[np.ndarray, np.ndarray]], sizes: Sequence[int], seed: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches of `sizes[i]` examples of `parts[i]` each (concatenated), every part
    walked in a new shuffled order per epoch; the order of part i depends on `seed` and i
    only, so real faces come in the same order with or without a synthetic part."""
    rngs = [np.random.default_rng([seed, i]) for i in range(len(parts))]
    orders = [np.empty(0, np.int64) for _ in parts]
    while True:
        images, labels = [], []
        for i, ((x, y), size) in enumerate(zip(parts, sizes, strict=True)):
            while len(orders[i]) < size:
                orders[i] = np.concatenate([orders[i], rngs[i].permutation(len(x))])
            take, orders[i] = orders[i][:size], orders[i][size:]
            images.append(x[take])
            labels.append(y[take])
        yield np.concatenate(images), np.concatenate(labels)


# -------------------------------------------------------------------------------- training


def train_classifier(parts: Sequence[tuple[np.ndarray, np.ndarray]], sizes: Sequence[int],
                     prior_rates: np.ndarray, steps: int, seed: int
                     ) -> attributes.AttributeClassifier:
    """The attribute classifier recipe of `experiments.train_attributes` on in-memory parts:
    `steps` Adam steps of batches `sum(sizes)` drawn as `batches`."""
    mesh = sharding.make_mesh(local=True)
    optimizer = optax.adam(0.002, b1=0.9, b2=0.99, eps=1e-8)
    params = sharding.replicate(attributes.init_with_priors(CLASSIFIER, jax.random.key(seed),
                                                            prior_rates), mesh)
    opt_state = sharding.replicate(optimizer.init(params), mesh)
    step_fn = attributes.make_train_step(CLASSIFIER, optimizer, mesh, True, seed)
    data = sharding.batch_sharded(mesh)
    it = batches(parts, sizes, seed)
    start = time.time()
    for step in range(steps):
        x, y = next(it)
        params, opt_state, loss, _ = step_fn(params, opt_state, jax.device_put(x, data),
                                             jax.device_put(y, data), np.int32(step))
        if (step + 1) % 200 == 0:
            logging.info("seed %d step %d/%d loss %.4f (%.0f s)", seed, step + 1, steps,
                         float(loss), time.time() - start)
    return attributes.AttributeClassifier(CLASSIFIER, jax.device_get(params))


def held_out_accuracy(clf: attributes.AttributeClassifier, real: dict[str, np.ndarray]
                      ) -> dict:
    """`attributes.heldout_accuracy` on the 500 held-out faces (baseline: the real training
    split's majority class)."""
    held = ({"image": real["held_image"][i:i + 100], "attributes": real["held_attr"][i:i + 100]}
            for i in range(0, HELD_OUT, 100))
    return attributes.heldout_accuracy(clf, held, real["train_attr"].mean(0), batch_size=100)


# ------------------------------------------------------------------------------- the study


def export_synthetic(outdir: pathlib.Path, labeller: pathlib.Path) -> str:
    """Runs `experiments.synth_dataset export` (resumable); returns its TFDS folder."""
    out = outdir / "export"
    command = [sys.executable, "-m", "experiments.synth_dataset", "export",
               f"--network={_NETWORK.value}", f"--num={_NUM_SYNTHETIC.value}",
               f"--classifier={labeller}", f"--trunc={_TRUNC.value}", f"--outdir={out}",
               "--progress=false"]
    logging.info("%s", " ".join(command))
    subprocess.run(command, check=True)
    return str(out / "tfds" / "synthetic_faces" / "export" / "1.0.0")


def summarise(runs: dict[str, list[dict]], labeller: dict) -> dict:
    """Per attribute and for the mean: each condition's mean over seeds and spread (max −
    min), the majority baseline and the labeller's accuracy."""
    names = list(labeller["per_attribute"])
    out = {"attributes": {}, "mean": {}}
    for condition, records in runs.items():
        per = np.array([[r["per_attribute"][n]["accuracy"] for n in names] for r in records])
        for j, n in enumerate(names):
            out["attributes"].setdefault(n, {})[condition] = {
                "mean": float(per[:, j].mean()), "spread": float(np.ptp(per[:, j])),
                "seeds": per[:, j].tolist()}
        means = per.mean(1)
        out["mean"][condition] = {"mean": float(means.mean()), "spread": float(np.ptp(means)),
                                  "seeds": means.tolist()}
    for n in names:
        out["attributes"][n]["baseline"] = labeller["per_attribute"][n]["majority_baseline"]
        out["attributes"][n]["labeller"] = labeller["per_attribute"][n]["accuracy"]
    out["mean"]["baseline"] = labeller["mean_majority_baseline"]
    out["mean"]["labeller"] = labeller["mean_accuracy"]
    return out


def table(summary: dict) -> str:
    """Markdown: attribute | real only | real + synthetic | difference | baseline | labeller
    (accuracy %, mean ± half the spread over the seeds)."""
    def cell(v: dict) -> str:
        return f"{100 * v['mean']:.1f} ± {50 * v['spread']:.1f}"

    lines = ["| attribute | real only | real + synthetic | Δ | majority | labeller |",
             "|---|---|---|---|---|---|"]
    rows = [*summary["attributes"].items(), ("**mean of 40**", summary["mean"])]
    for name, v in rows:
        delta = 100 * (v["real+synthetic"]["mean"] - v["real"]["mean"])
        lines.append(f"| {name} | {cell(v['real'])} | {cell(v['real+synthetic'])} | "
                     f"{delta:+.1f} | {100 * v['baseline']:.1f} | {100 * v['labeller']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
    del argv
    outdir = pathlib.Path(_OUTDIR.value)
    outdir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in _SEEDS.value]
    steps, half = _STEPS.value, _BATCH.value // 2
    timings = {}
    start = time.time()
    real = real_faces(outdir / "real_faces32.npz")
    train = (real["train_image"], real["train_attr"])
    rates = real["train_attr"].mean(0)
    timings["real_faces"] = time.time() - start

    labeller_dir = outdir / "labeller"
    start = time.time()
    if not (labeller_dir / attributes.CONFIG_FILE).is_file():
        clf = train_classifier([train], [_BATCH.value], rates, steps, _LABELLER_SEED.value)
        attributes.save_classifier(labeller_dir, CLASSIFIER, clf.params, metadata=dict(
            data="celeba_small 001001-004500 (celeba32 face box, 32^2)", steps=steps,
            seed=_LABELLER_SEED.value))
    labeller_record = held_out_accuracy(attributes.load_classifier(labeller_dir), real)
    timings["labeller"] = time.time() - start

    start = time.time()
    synthetic = read_export(export_synthetic(outdir, labeller_dir))
    timings["export"] = time.time() - start
    with open(outdir / "export" / "report.json") as f:
        export_report = json.load(f)

    runs: dict[str, list[dict]] = {"real": [], "real+synthetic": []}
    for seed in seeds:
        for condition, parts, sizes in (("real", [train], [2 * half]),
                                        ("real+synthetic", [train, synthetic], [half, half])):
            start = time.time()
            clf = train_classifier(parts, sizes, rates, steps, seed)
            runs[condition].append(held_out_accuracy(clf, real))
            timings[f"{condition}/{seed}"] = time.time() - start
            logging.info("%s seed %d: mean held-out accuracy %.4f (%.0f s)", condition, seed,
                         runs[condition][-1]["mean_accuracy"], timings[f"{condition}/{seed}"])
    summary = summarise(runs, labeller_record)
    text = table(summary)
    record = {"seeds": seeds, "steps": steps, "batch_size": 2 * half,
              "num_synthetic": int(len(synthetic[0])), "truncation_psi": _TRUNC.value,
              "export_candidates": export_report.get("candidates"),
              "export_filters": export_report.get("filters"),
              "labeller_seed": _LABELLER_SEED.value, "summary": summary, "runs": runs,
              "labeller": labeller_record, "seconds": timings,
              "jax": jax.__version__, "cpu_count": os.cpu_count()}
    files.write_json(outdir / "results.json", record, indent=1)
    files.write_text(outdir / "results.md", text)
    print(text, end="")


if __name__ == "__main__":
    app.run(main)
