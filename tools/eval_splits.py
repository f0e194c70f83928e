r"""FID/KID of one generator against several splits of a training config's dataset, with one
pass over the generator (how the bundled models' figures are measured).

    python tools/eval_splits.py --network=runs/celeba32/snapshots/network-snapshot-000560 \
        --config=experiments/configs/celeba32.py --splits='train[-500:],train' \
        --num_gen=10000 --out=docs/training/celeba32/metrics-final.jsonl

Each split is the config's `data` section with `split` replaced (same crop, resolution, no
flips), e.g. the held-out `train[-500:]` and the whole folder `train`. The generated images
(`--num_gen`, seeds from `--seed`) are drawn and passed through the FID Inception once; every
split and metric reuses their features. One JSON line per (split, metric) is printed and
appended to `--out`, with the split, the real-image count and `--kimg` (default: from the
snapshot's name).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

_NETWORK = flags.DEFINE_string("network", None, "Snapshot export, .pkl or bundled name.",
                               required=True)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config (its data section).")
_SPLITS = flags.DEFINE_list("splits", ["train"], "Splits of the config's dataset.")
_METRICS = flags.DEFINE_list("metrics", ["fid", "kid"], "Metrics taking --num_gen images.")
_NUM_GEN = flags.DEFINE_integer("num_gen", 10000, "Generated images.")
_SEED = flags.DEFINE_integer("seed", 0, "Generator sampling and KID subsets.")
_KIMG = flags.DEFINE_float("kimg", None, "Training progress to record (default: from the "
                           "snapshot's name).")
_OUT = flags.DEFINE_string("out", None, "JSON-lines file to append to.")


def main(argv: list[str]) -> None:
    del argv
    from flaxgan import sample  # noqa: PLC0415 (after flag parsing: JAX start-up)
    from flaxgan.metrics import detectors, evaluation, registry  # noqa: PLC0415
    from flaxgan.train.loop import snapshot_kimg  # noqa: PLC0415

    g = sample.load(_NETWORK.value)
    kimg = _KIMG.value if _KIMG.value is not None else snapshot_kimg(_NETWORK.value)
    fake = evaluation.network_source(g.module, g.variables, g.c_dim, _SEED.value,
                                     name=f"{_NETWORK.value.rstrip('/').split('/')[-1]}")
    weights = detectors.load_detectors(_METRICS.value)
    generated: dict = {}
    for split in _SPLITS.value:
        real = evaluation.dataset_source({**_CONFIG.value.data.to_dict(), "split": split})
        ctx = registry.MetricContext(real=real, fake=fake, num_gen=_NUM_GEN.value,
                                     progress=False, seed=_SEED.value, **weights)
        ctx.generated_features.update(generated)  # the generator's features, computed once
        evaluation.evaluate_context(
            _METRICS.value, ctx, out=_OUT.value, echo=True,
            extra=dict(kimg=kimg, network=_NETWORK.value, split=split,
                       num_real=real.num_images))
        generated = ctx.generated_features


if __name__ == "__main__":
    sys.exit(app.run(main))
