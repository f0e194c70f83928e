r"""Bundles a training snapshot as a pretrained model of the package (`flaxgan/pretrained/NAME`).

    python tools/bundle_pretrained.py --snapshot=runs/celeba32/snapshots/network-snapshot-000800 \
        --name=celeba32 --about=about.json [--metrics=runs/celeba32/metrics-final.jsonl] \
        [--classifier=out/attr_faces32]

Copies the snapshot's G_ema and D (`network.json` + official-format `.npz`; a fine-tuning run
starts G from G_ema) with the
parameters in float16 (buffers stay float32; `sample.load` restores float32) and writes
`model.json`: resolution and architecture read from the snapshot, kimg from its name, `metrics`
from the `experiments.eval` records given (`{"metric": ..., "value": ...}` lines; the last value
of each metric wins), and the descriptive fields (`dataset`, `training`, `licence`) from
`--about`, a JSON object. Also writes `float32_reference.npz`: the images of seeds 0-3 (ψ 1,
constant noise) from the float32 snapshot, which tests compare with the float16-stored copy;
`model.json` records the largest difference measured here (`float16_max_abs_error`, on the
[-1, 1] image scale). `--classifier` adds an attribute classifier trained on the same crop of
the same faces as `attributes/` (float16 parameters as well, its `accuracy.json` beside it, the
largest logit change from float16 storage on the reference images in its metadata), which
`experiments.directions` then uses by default. Prints the size written.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

from absl import app, flags

_SNAPSHOT = flags.DEFINE_string("snapshot", None, "Export folder of a training snapshot.",
                                required=True)
_NAME = flags.DEFINE_string("name", None, "Bundled model name (e.g. celeba32).", required=True)
_ABOUT = flags.DEFINE_string("about", None, "JSON file: dataset, training, licence.",
                             required=True)
_METRICS = flags.DEFINE_list("metrics", [], "experiments.eval output files (JSON lines).")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "Attribute classifier folder "
                                  "(experiments.train_attributes) matched to this model's data.")

NETWORKS = ("G_ema", "D")  # G_ema also starts fine-tuning as G (saves 40% of the size)
REFERENCE_SEEDS = (0, 1, 2, 3)


def _architecture(kwargs: dict) -> str:
    synthesis = kwargs.get("synthesis_kwargs", {})
    return (f"{kwargs['class_name']} (z {kwargs.get('z_dim')}, w {kwargs.get('w_dim')}, "
            f"{kwargs.get('mapping_kwargs', {}).get('num_layers', 8)} mapping layers, "
            f"channel_base {synthesis.get('channel_base')}, channel_max "
            f"{synthesis.get('channel_max')}, {synthesis.get('architecture', 'skip')})")


def _metrics(paths: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for path in paths:
        for line in pathlib.Path(path).read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                values[record["metric"]] = round(float(record["value"]), 4)
    return values


def _half(path: pathlib.Path) -> dict:
    """The arrays of an `.npz`, float32 ones as float16."""
    import numpy as np  # noqa: PLC0415

    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].astype(np.float16) if z[k].dtype == np.float32 else z[k] for k in z.files}


def bundle_classifier(source: pathlib.Path, target: pathlib.Path, images) -> float:
    """Copies the attribute classifier in `source` to `target` with float16 parameters.

    Returns the largest |logit| change that storage causes on `images` (uint8 [N, H, W, 3]),
    also written into the copy's metadata.
    """
    import numpy as np  # noqa: PLC0415

    from flaxgan.metrics import attributes  # noqa: PLC0415

    target.mkdir(parents=True)
    np.savez(target / attributes.WEIGHTS_FILE, **_half(source / attributes.WEIGHTS_FILE))
    for name in (attributes.CONFIG_FILE, "accuracy.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)

    def logits(folder):
        clf = attributes.load_classifier(folder)
        x = attributes.to_classifier_input(images, clf.config.resolution)
        return np.asarray(attributes.logits_fn(clf.params, x, clf.config))

    error = float(np.max(np.abs(logits(target) - logits(source))))
    info = json.loads((target / attributes.CONFIG_FILE).read_text())
    info["metadata"].update(parameters="float16", float16_max_abs_logit_error=error)
    (target / attributes.CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return error


def main(argv: list[str]) -> None:
    del argv
    import numpy as np  # noqa: PLC0415

    from flaxgan import convert, pretrained, sample  # noqa: PLC0415
    from flaxgan.train.loop import snapshot_kimg  # noqa: PLC0415

    snapshot = pathlib.Path(_SNAPSHOT.value).resolve()
    networks = sample.export_networks(str(snapshot))
    kimg = snapshot_kimg(snapshot)
    target = pretrained.ROOT / _NAME.value
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for key in NETWORKS:
        kwargs, parameters, buffers = sample.read_export(str(snapshot), key)
        tmp.mkdir(parents=True, exist_ok=True)
        parameters = {k: v.astype(np.float16) if v.dtype == np.float32 else v
                      for k, v in parameters.items()}
        convert.save_state_dict_npz(tmp / f"{key}.npz", parameters, buffers)
    (tmp / sample.NETWORK_JSON).write_text(
        json.dumps({k: networks[k] for k in NETWORKS}, indent=1) + "\n")
    about = json.loads(pathlib.Path(_ABOUT.value).read_text())
    g = networks["G_ema"]
    info = dict(resolution=int(g["img_resolution"]), architecture=_architecture(g),
                kimg=kimg, metrics=_metrics(_METRICS.value),
                **{k: about[k] for k in ("dataset", "training", "licence")})
    def images(g):
        return sample.synthesize(g, sample.mapping(g, sample.seeds_to_z(g, REFERENCE_SEEDS)))

    full, stored = images(sample.load(str(snapshot))), images(sample.load(str(tmp)))
    np.savez(tmp / pretrained.REFERENCE_NPZ, seeds=np.array(REFERENCE_SEEDS), images=full)
    info["float16_max_abs_error"] = float(np.max(np.abs(stored - full)))
    if _CLASSIFIER.value:
        uint8 = np.clip(np.rint((full + 1) * 127.5), 0, 255).astype(np.uint8)
        error = bundle_classifier(pathlib.Path(_CLASSIFIER.value),
                                  tmp / pretrained.ATTRIBUTES_DIR, uint8)
        print(f"attribute classifier: float16 logits within {error:.2e} of float32")
    (tmp / pretrained.MODEL_JSON).write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 2**20:.2f} MiB ({', '.join(NETWORKS)}, float16 parameters; "
          f"images within {info['float16_max_abs_error']:.2e} of float32)")


if __name__ == "__main__":
    sys.exit(app.run(main))
