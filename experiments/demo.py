r"""`make demo`: faces from the bundled `celeba32` model, then a short fine-tuning run of it.

    python -m experiments.demo --outdir=out/demo [--network=celeba32] [--kimg=1]

Writes under `--outdir` (images shown 4x enlarged, nearest-neighbour: one 32² face per tile):

  uncurated.png        seeds 0-31 at ψ = 1, nothing picked;
  truncation.png       rows ψ = 1, 0.75, 0.5, 0.25, 0 (the last row is the average face);
  style_mixing_{coarse,middle,fine}.png   rows take the coarse (4²-8²), middle (16²) or fine
                       (32²) styles from the top row (StyleGAN paper, fig. 3);
  interpolation.gif    four walks through W (linear between the ws of successive seeds);
  finetune/            a fine-tuning run: G, D and G_ema of the bundled model resumed with the
                       full objective (non-saturating loss, R1, path length, style mixing) and
                       ADA on the 512 faces in tests/data/celeba_small, for `--kimg` kimg:
                       `metrics.jsonl`, `samples/`, `snapshots/` (rerunning resumes it);
  finetuned.png        seeds 0-31 from the fine-tuned G_ema.

About two minutes on 2 CPU cores after set-up (most of it compiling the four training phases).
"""

from __future__ import annotations

import glob
import os

import numpy as np
from absl import app, flags

from experiments import cli
from experiments.configs import celeba32, common
from flaxgan import sample
from flaxgan.train import loop

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line (defined when run, so that importing the demo's functions, e.g. in a
    test process that also imports other entry points, defines no flags)."""
    flags.DEFINE_string("outdir", "out/demo", "Output directory.")
    flags.DEFINE_string("network", "celeba32", "Bundled model name, export dir or .pkl.")
    flags.DEFINE_float("kimg", 1.0, "Fine-tuning length (kimg); 0 skips fine-tuning.")

ZOOM = 4
UNCURATED = tuple(range(32))
TRUNCATIONS = (1.0, 0.75, 0.5, 0.25, 0.0)
MIX_ROWS, MIX_COLS = (101, 102, 103, 104), (201, 202, 203, 204, 205)
WALKS = ((0, 7, 14, 21, 0), (1, 8, 15, 22, 1), (2, 9, 16, 23, 2), (3, 10, 17, 24, 3))
FRAMES_PER_STEP = 12
FINETUNE_FACES = common.REPO_ROOT / "tests" / "data" / "celeba_small"


def latest_snapshot(workdir: str) -> str:
    snapshots = sorted(glob.glob(os.path.join(workdir, "snapshots", "network-snapshot-*")))
    if not snapshots:
        raise FileNotFoundError(f"{workdir}: no snapshots written")
    return snapshots[-1]


def _save(image, path: str) -> str:
    image.resize((image.width * ZOOM, image.height * ZOOM), resample=0).save(path)
    return path


def sample_grids(g: sample.LoadedGenerator, outdir: str) -> dict[str, str]:
    """Uncurated, truncation and style-mixing grids; `{what: path}`."""
    written = {"uncurated grid (seeds 0-31, psi 1)": _save(
        sample.grid(sample.generate(g, UNCURATED), cols=8),
        os.path.join(outdir, "uncurated.png"))}
    rows = [sample.generate(g, UNCURATED[:8], truncation_psi=psi) for psi in TRUNCATIONS]
    written[f"truncation grid (rows psi = {TRUNCATIONS})"] = _save(
        sample.grid([im for row in rows for im in row], cols=8),
        os.path.join(outdir, "truncation.png"))
    for layers in ("coarse", "middle", "fine"):
        mix, _ = sample.style_mix(g, MIX_ROWS, MIX_COLS, layers=layers)
        written[f"style mixing, {layers} styles from the top row"] = _save(
            mix, os.path.join(outdir, f"style_mixing_{layers}.png"))
    return written


def interpolation_gif(g: sample.LoadedGenerator, path: str) -> str:
    """Four side-by-side walks through W (lerp between successive seeds' ws), looping."""
    t = np.linspace(0.0, 1.0, FRAMES_PER_STEP, endpoint=False)[:, None, None]
    walks = []
    for seeds in WALKS:
        ws = sample.mapping(g, sample.seeds_to_z(g, seeds))
        walks.append(np.concatenate([a[None] + t * (b - a)[None]
                                     for a, b in zip(ws[:-1], ws[1:], strict=True)]))
    frames = sample.to_pil(sample.synthesize(g, np.concatenate(walks).astype(np.float32)))
    per_walk = len(frames) // len(WALKS)
    strips = [sample.grid(frames[i::per_walk][:len(WALKS)], cols=len(WALKS))
              for i in range(per_walk)]
    strips = [s.resize((s.width * ZOOM, s.height * ZOOM), resample=0) for s in strips]
    strips[0].save(path, save_all=True, append_images=strips[1:], duration=80, loop=0)
    return path


def finetune_config(network: str, kimg: float):
    """The celeba32 recipe resumed from `network` on the faces bundled with the repo."""
    config = celeba32.get_config()
    config.resume_pkl = network
    config.data.name = str(FINETUNE_FACES)
    config.data.split = "train"
    config.train.total_kimg = kimg
    config.log.kimg_per_tick = min(0.5, kimg)
    config.log.image_every_ticks = 1
    config.log.snapshot_every_ticks = 1
    config.log.metrics = ()
    config.log.keep_checkpoints = 1
    return config


def main(argv: list[str]) -> None:
    del argv
    cli.quiet_dependency_logs()
    outdir, network, kimg = FLAGS.outdir, FLAGS.network, FLAGS.kimg
    os.makedirs(outdir, exist_ok=True)
    g = sample.load(network)
    written = sample_grids(g, outdir)
    written["interpolation (GIF)"] = interpolation_gif(
        g, os.path.join(outdir, "interpolation.gif"))
    if kimg > 0:
        workdir = os.path.join(outdir, "finetune")
        loop.train(finetune_config(network, kimg), workdir)
        tuned = sample.load(latest_snapshot(workdir))
        written[f"fine-tuned {kimg:g} kimg (metrics.jsonl, samples/, snapshots/)"] = workdir
        written["fine-tuned uncurated grid"] = _save(
            sample.grid(sample.generate(tuned, UNCURATED), cols=8),
            os.path.join(outdir, "finetuned.png"))
    print(f"network: {g.source}")
    for what, path in written.items():
        print(f"{what}: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
