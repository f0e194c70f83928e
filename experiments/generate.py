r"""Generate images from a trained network (official `.pkl` or flaxgan export).

    python -m experiments.generate --network=snapshot.pkl --seeds=0-7 --trunc=0.7 \
        --outdir=out/generated [--class=3] [--noise_mode=const] [--trunc_cutoff=8] [--grid=4]
        [--translate=0.1,-0.05 --rotate=10]   # StyleGAN3: move/rotate the input grid

Writes `seed%04d.png` per seed (the official naming) and, with --grid=COLS, `grid.png`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from experiments.cli import parse_range
from flaxgan import sample

_NETWORK = flags.DEFINE_string("network", None, "Official .pkl snapshot or flaxgan export dir.",
                               required=True)
_KEY = flags.DEFINE_string("key", "G_ema", "Which network of the snapshot to use.")
_SEEDS = flags.DEFINE_string("seeds", "0-7", "Seeds, e.g. '0-7,12'.")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi.")
_TRUNC_CUTOFF = flags.DEFINE_integer("trunc_cutoff", None, "Truncate only the first N ws.")
_CLASS = flags.DEFINE_integer("class", None, "Class index (conditional networks).")
_NOISE_MODE = flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"],
                                "Noise mode.")
_OUTDIR = flags.DEFINE_string("outdir", "out/generated", "Output directory.")
_GRID = flags.DEFINE_integer("grid", 0, "Also write grid.png with this many columns (0 = no).")
_TRANSLATE = flags.DEFINE_list("translate", None, "StyleGAN3 only: translate XCOORD,YCOORD.")
_ROTATE = flags.DEFINE_float("rotate", None, "StyleGAN3 only: rotation angle in degrees.")


def main(argv: list[str]) -> None:
    del argv
    try:
        seeds = parse_range(_SEEDS.value)
        g = sample.load(_NETWORK.value, key=_KEY.value)
    except ValueError as e:  # SnapshotError included: one line, no traceback.
        sys.exit(f"error: {e}")
    logging.info("Loaded %s: %dx%d, z_dim %d, c_dim %d", _NETWORK.value, g.img_resolution,
                 g.img_resolution, g.z_dim, g.c_dim)
    extra = {}
    if _TRANSLATE.value is not None or _ROTATE.value is not None:
        translate = tuple(float(v) for v in (_TRANSLATE.value or (0, 0)))
        if len(translate) != 2:
            sys.exit(f"error: --translate takes X,Y, got {_TRANSLATE.value}")
        extra["transform"] = sample.input_transform(translate, _ROTATE.value or 0.0)
    try:
        images = sample.generate(g, seeds, truncation_psi=_TRUNC.value, c=_CLASS.value,
                                 noise_mode=_NOISE_MODE.value,
                                 truncation_cutoff=_TRUNC_CUTOFF.value, **extra)
    except ValueError as e:  # e.g. a class index out of range, or a transform for StyleGAN2.
        sys.exit(f"error: {e}")
    os.makedirs(_OUTDIR.value, exist_ok=True)
    for seed, image in zip(seeds, images, strict=True):
        image.save(os.path.join(_OUTDIR.value, f"seed{seed:04d}.png"))
    if _GRID.value:
        sample.grid(images, cols=_GRID.value).save(os.path.join(_OUTDIR.value, "grid.png"))
    print(f"wrote {len(images)} images to {_OUTDIR.value}")


if __name__ == "__main__":
    app.run(main)
