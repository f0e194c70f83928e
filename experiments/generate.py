r"""Generate images from a trained network (official `.pkl`, flaxgan export or bundled model).

    python -m experiments.generate --network=celeba32 --seeds=0-15 --grid=4   # bundled model
    python -m experiments.generate --network=snapshot.pkl --seeds=0-7 --trunc=0.7 \
        --outdir=out/generated [--class=3] [--noise_mode=const] [--trunc_cutoff=8] [--grid=4]
        [--translate=0.1,-0.05 --rotate=10]   # StyleGAN3: move/rotate the input grid

Writes `seed%04d.png` per seed (the official naming) and, with --grid=COLS, `grid.png`. Every
flag is checked, and the images generated, before anything is written; bad input is one line
`error: ...` (exit status 2). The official generate.py / gen_images.py flags work as they are:
`--network --seeds --trunc --class --outdir --translate --rotate`, and the dashed
`--noise-mode`, `--trunc-cutoff` beside ours.
"""

from __future__ import annotations

import math
import os
from typing import Any

from absl import app, flags, logging

from experiments import cli
from flaxgan import sample, xla_cpu
from flaxgan.errors import InvalidArgument

_NETWORK = flags.DEFINE_string(
    "network", None, "Official .pkl snapshot, flaxgan export dir or bundled model name "
    "(flaxgan.sample.pretrained(): celeba32).", required=True)
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

MAX_SEEDS = 100_000  # Images held in memory before writing; split larger jobs.
MAX_SEED = 2**32 - 1  # np.random.RandomState's range (the official seed -> z).
MAX_PSI = 2.0  # |psi| beyond this extrapolates far past the data (typical: 0.5 - 1).


def check_seeds(spec: str) -> list[int]:
    """`--seeds` as a list of at most `MAX_SEEDS` seeds in RandomState's range."""
    seeds = cli.parse_range(spec, limit=MAX_SEEDS)
    if max(seeds) > MAX_SEED:
        raise InvalidArgument(f"--seeds={spec}: seeds must be at most 2**32 - 1 = {MAX_SEED}")
    return seeds


def check_truncation(psi: float, cutoff: int | None, num_ws: int) -> None:
    """`--trunc` finite with |psi| <= `MAX_PSI`; `--trunc_cutoff` in [0, num_ws]."""
    if not math.isfinite(psi) or abs(psi) > MAX_PSI:
        raise InvalidArgument(f"--trunc={psi}: expected a finite psi in [-{MAX_PSI}, {MAX_PSI}] "
                              "(1 = no truncation, 0.5-0.7 typical)")
    if cutoff is not None and not 0 <= cutoff <= num_ws:
        raise InvalidArgument(f"--trunc_cutoff={cutoff}: expected 0..{num_ws} (this network "
                              f"has {num_ws} ws), or leave it unset to truncate all")


def input_transform(translate: list[str] | None, rotate: float | None) -> dict[str, Any]:
    """`{'transform': ...}` for StyleGAN3's input grid, or `{}` when neither flag is given."""
    if translate is None and rotate is None:
        return {}
    try:
        xy = tuple(float(v) for v in (translate or (0, 0)))
    except ValueError:
        raise InvalidArgument(f"--translate={','.join(translate)}: expected two numbers X,Y"
                              ) from None
    angle = 0.0 if rotate is None else rotate
    if len(xy) != 2 or not all(math.isfinite(v) for v in (*xy, angle)):
        raise InvalidArgument(f"--translate={translate} --rotate={rotate}: expected finite "
                              "X,Y and a finite angle in degrees")
    return {"transform": sample.input_transform(xy, angle)}


@cli.reports_user_errors()
def main(argv: list[str]) -> None:
    del argv
    cli.quiet_dependency_logs()
    seeds = check_seeds(_SEEDS.value)
    if _GRID.value < 0:
        raise InvalidArgument(f"--grid={_GRID.value}: expected a number of columns >= 1, or 0 "
                              "for no grid")
    cli.check_outdir(_OUTDIR.value)
    extra = input_transform(_TRANSLATE.value, _ROTATE.value)
    logging.info(xla_cpu.describe())
    g = sample.load(_NETWORK.value, key=_KEY.value)
    logging.info("Loaded %s: %dx%d, z_dim %d, c_dim %d", _NETWORK.value, g.img_resolution,
                 g.img_resolution, g.z_dim, g.c_dim)
    check_truncation(_TRUNC.value, _TRUNC_CUTOFF.value, g.num_ws)
    images = sample.generate(g, seeds, truncation_psi=_TRUNC.value, c=_CLASS.value,
                             noise_mode=_NOISE_MODE.value,
                             truncation_cutoff=_TRUNC_CUTOFF.value, **extra)
    grid = sample.grid(images, cols=_GRID.value) if _GRID.value else None
    os.makedirs(_OUTDIR.value, exist_ok=True)
    for seed, image in zip(seeds, images, strict=True):
        image.save(os.path.join(_OUTDIR.value, f"seed{seed:04d}.png"))
    if grid is not None:
        grid.save(os.path.join(_OUTDIR.value, "grid.png"))
    print(f"wrote {len(images)} images to {_OUTDIR.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
