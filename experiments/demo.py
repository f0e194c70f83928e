r"""`make demo`: train the smoke config on the bundled real faces, then sample what it learned.

    python -m experiments.demo --outdir=out/demo

Runs `experiments.train --config=smoke.py` (a tiny StyleGAN2-ADA at 32² on the 512 CelebA faces
in tests/data/celeba_small, a few kimg on CPU; resumes if `outdir/smoke` already holds a run),
then writes from its latest official-format snapshot a truncation grid (rows ψ = 1, 0.7, 0.5,
0) and a coarse style-mixing grid. The training run leaves `metrics.jsonl`, sample grids, a
checkpoint and the snapshot under `outdir/smoke`. A few kimg are far from faces: expect
face-coloured blobs that become smoother as ψ -> 0.
"""

from __future__ import annotations

import glob
import os

from absl import app, flags, logging

from experiments import cli
from experiments.configs import smoke
from flaxgan import sample
from flaxgan.train import loop

_OUTDIR = flags.DEFINE_string("outdir", "out/demo", "Output directory.")
_KIMG = flags.DEFINE_float("kimg", None, "Override the smoke config's total_kimg.")

TRUNCATIONS = (1.0, 0.7, 0.5, 0.0)
SEEDS = tuple(range(8))


def latest_snapshot(workdir: str) -> str:
    snapshots = sorted(glob.glob(os.path.join(workdir, "snapshots", "network-snapshot-*")))
    if not snapshots:
        raise FileNotFoundError(f"{workdir}: no snapshots written")
    return snapshots[-1]


def main(argv: list[str]) -> None:
    del argv
    cli.quiet_dependency_logs()
    workdir = os.path.join(_OUTDIR.value, "smoke")
    config = smoke.get_config()
    if _KIMG.value is not None:
        config.train.total_kimg = _KIMG.value
    loop.train(config, workdir)

    g = sample.load(latest_snapshot(workdir))
    rows = [sample.generate(g, SEEDS, truncation_psi=psi) for psi in TRUNCATIONS]
    truncation_path = os.path.join(_OUTDIR.value, "truncation_grid.png")
    sample.grid([im for row in rows for im in row], cols=len(SEEDS)).save(truncation_path)
    mix, _ = sample.style_mix(g, row_seeds=[10, 11, 12], col_seeds=[20, 21, 22, 23],
                              layers="coarse")
    mix_path = os.path.join(_OUTDIR.value, "style_mixing_grid.png")
    mix.save(mix_path)
    logging.info("metrics: %s", os.path.join(workdir, "metrics.jsonl"))
    print(f"training run (metrics.jsonl, samples/, snapshots/): {workdir}")
    print(f"truncation grid (rows psi={TRUNCATIONS}): {truncation_path}")
    print(f"style-mixing grid (coarse styles from the top row): {mix_path}")


if __name__ == "__main__":
    app.run(main)
