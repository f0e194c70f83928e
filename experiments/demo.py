r"""`make demo`: sample a vendored StyleGAN2 snapshot and write a truncation and a mixing grid.

    python -m experiments.demo --outdir=out/demo

The snapshot is the official reference network vendored for the parity tests (a small 32²
generator with perturbed weights, so the images are abstract textures, not faces); once
training lands the demo trains on the bundled real faces instead.
"""

from __future__ import annotations

import os
import pathlib

from absl import app, flags

from flaxgan import sample

_OUTDIR = flags.DEFINE_string("outdir", "out/demo", "Output directory.")
_NETWORK = flags.DEFINE_string(
    "network",
    str(pathlib.Path(__file__).resolve().parents[1] / "tests/data/reference/sg2_uncond32.pkl"),
    "Snapshot to sample.")

TRUNCATIONS = (1.0, 0.7, 0.5, 0.0)
SEEDS = tuple(range(6))


def main(argv: list[str]) -> None:
    del argv
    os.makedirs(_OUTDIR.value, exist_ok=True)
    g = sample.load(_NETWORK.value)
    rows = [sample.generate(g, SEEDS, truncation_psi=psi) for psi in TRUNCATIONS]
    truncation_path = os.path.join(_OUTDIR.value, "truncation_grid.png")
    sample.grid([im for row in rows for im in row], cols=len(SEEDS)).save(truncation_path)
    mix, _ = sample.style_mix(g, row_seeds=[10, 11, 12], col_seeds=[20, 21, 22, 23],
                              layers="coarse")
    mix_path = os.path.join(_OUTDIR.value, "style_mixing_grid.png")
    mix.save(mix_path)
    print(f"truncation grid (rows psi={TRUNCATIONS}): {truncation_path}")
    print(f"style-mixing grid (coarse styles from the top row): {mix_path}")


if __name__ == "__main__":
    app.run(main)
