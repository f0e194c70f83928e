r"""Project a photo into a trained network's W (or W+) latent space (the official projector).

    python -m experiments.project --network=celeba32 --target=photo.jpg --outdir=out/proj
    python -m experiments.project --network=snapshot.pkl --target=face.png --outdir=out/proj \
        [--space=w|w+] [--steps=1000] [--seed=303] [--save_video] \
        [--align=mtcnn|celeba|none] [--crop_box=L,T,R,B] [--distance=inception|lpips|pixel] \
        [--vgg16=vgg16.pt]

The photo is first cut like the training data (`--align`): `mtcnn` finds the largest face and
aligns it as aligned CelebA was made, then cuts the training crop (`--crop_box`, default the
CelebA face box of the bundled `celeba32`); `celeba` takes an aligned CelebA image as it is;
`none` is the official script's centre square. Then `flaxgan.project.project` runs (LPIPS-VGG16
as the official when `--vgg16` is given, else the FID-Inception distance; see that module).

Writes to `--outdir`, as the official script: `target.png` (the aligned target), `proj.png`
(the projection, rendered with the optimised noise maps), `projected_w.npz` (key `w`:
`[1, num_ws, w_dim]`, the official layout; also `noise/<buffer>` maps `[H, W]`, the `dist` and
`loss` histories and what was run) and with `--save_video` `proj.mp4` (target | projection at
every step, 10 fps, H.264 through the ffmpeg that `imageio-ffmpeg` ships). Bad input is one line
`error: ...` (exit status 2) before anything is written.
"""

from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np
from absl import app, flags, logging

from experiments import cli
from flaxgan import project as project_lib
from flaxgan import sample
from flaxgan.errors import InvalidArgument

_NETWORK = flags.DEFINE_string(
    "network", None, "Official .pkl snapshot, flaxgan export dir or bundled model name "
    "(flaxgan.sample.pretrained(): celeba32).", required=True)
_KEY = flags.DEFINE_string("key", "G_ema", "Which network of the snapshot to use.")
_TARGET = flags.DEFINE_string("target", None, "Image file to project.", required=True)
_OUTDIR = flags.DEFINE_string("outdir", "out/proj", "Output directory.")
_SPACE = flags.DEFINE_enum("space", "w", list(project_lib.SPACES),
                           "w: one w for all layers (the official); w+: one w per layer.")
_STEPS = flags.DEFINE_integer("steps", 1000, "Optimisation steps.")
_SEED = flags.DEFINE_integer("seed", 303, "Random seed (noise maps, latent noise).")
_SAVE_VIDEO = flags.DEFINE_boolean("save_video", False,
                                   "Also write proj.mp4 (target | projection per step).")
_ALIGN = flags.DEFINE_enum("align", "mtcnn", list(project_lib.ALIGN_METHODS),
                           "mtcnn: detect and align the face; celeba: an aligned CelebA image; "
                           "none: centre square (the official).")
_CROP_BOX = flags.DEFINE_list(
    "crop_box", None, "Training crop L,T,R,B as fractions of the aligned 178x218 CelebA frame "
    "(default: the celeba32 face box).")
_DISTANCE = flags.DEFINE_enum("distance", None, list(project_lib.DISTANCES),
                              "Default: lpips with --vgg16, else inception.")
_VGG16 = flags.DEFINE_string("vgg16", None, "VGG16 weights for --distance=lpips (NVIDIA "
                             "vgg16.pt or torchvision vgg16-397923af.pth); $FLAXGAN_VGG16.")
_W_AVG_SAMPLES = flags.DEFINE_integer("w_avg_samples", project_lib.W_AVG_SAMPLES,
                                      "Latents mapped for w_avg and w_std.")

MAX_STEPS = 100_000
VIDEO_FPS = 10  # the official's
VIDEO_CHUNK = 16  # frames synthesized at a time


def check_flags() -> tuple[tuple[float, ...], str]:
    """Flag values that absl does not check: steps, crop box, seed; returns (box, distance)."""
    if not 1 <= _STEPS.value <= MAX_STEPS:
        raise InvalidArgument(f"--steps={_STEPS.value}: expected 1..{MAX_STEPS}")
    if not 0 <= _SEED.value < 2**32:
        raise InvalidArgument(f"--seed={_SEED.value}: expected 0..2**32-1")
    if _W_AVG_SAMPLES.value < 2:
        raise InvalidArgument(f"--w_avg_samples={_W_AVG_SAMPLES.value}: expected >= 2")
    box = project_lib.CELEBA_FACE_BOX
    if _CROP_BOX.value is not None:
        try:
            box = tuple(float(v) for v in _CROP_BOX.value)
        except ValueError:
            raise InvalidArgument(f"--crop_box={','.join(_CROP_BOX.value)}: expected four "
                                  "fractions L,T,R,B") from None
        if not all(math.isfinite(v) for v in box):
            raise InvalidArgument(f"--crop_box={','.join(_CROP_BOX.value)}: not finite")
        project_lib._check_box(box)
    distance = _DISTANCE.value or ("lpips" if _VGG16.value else "inception")
    if _VGG16.value and distance != "lpips":
        raise InvalidArgument(f"--vgg16 is only used by --distance=lpips, not {distance}")
    return box, distance


def read_target(path: str) -> np.ndarray:
    """The target photo as uint8 `[H, W, 3]`; one line naming the file when it is not one."""
    from data_pipelines import filters

    if not os.path.isfile(path):
        raise InvalidArgument(f"--target={path}: no such file")
    return filters.read_image(path)


def write_video(path: str, g: sample.LoadedGenerator, result: project_lib.Projection,
                target: np.ndarray) -> None:
    """`proj.mp4`: target | projection of w after every step (with the final noise maps)."""
    import imageio

    g_noise = project_lib.with_noise(g, result.noise_of(0))
    trajectory = result.trajectory[0]
    with warnings.catch_warnings(), imageio.get_writer(
            path, mode="I", fps=VIDEO_FPS, codec="libx264", bitrate="16M") as video:
        # JAX warns at every fork; the ffmpeg subprocess execs at once (no JAX in the child).
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        for i in range(0, len(trajectory), VIDEO_CHUNK):
            frames = sample.to_uint8(sample.synthesize(g_noise, trajectory[i:i + VIDEO_CHUNK],
                                                       batch_size=VIDEO_CHUNK))
            for frame in frames:
                video.append_data(np.concatenate([target, frame], axis=1))

@cli.reports_user_errors()
def main(argv: list[str]) -> None:
    del argv
    box, distance_name = check_flags()
    cli.check_outdir(_OUTDIR.value)
    photo = read_target(_TARGET.value)
    g = sample.load(_NETWORK.value, key=_KEY.value)
    logging.info("Loaded %s: %dx%d, num_ws %d, w_dim %d", _NETWORK.value, g.img_resolution,
                 g.img_resolution, g.num_ws, g.w_dim)
    if g.img_channels != 3:
        raise InvalidArgument(f"--network={_NETWORK.value}: the projector needs an RGB "
                              f"generator, this one has {g.img_channels} channels")
    target = project_lib.align_target(photo, g.img_resolution, _ALIGN.value, box,
                                      name=_TARGET.value)
    distance = project_lib.make_distance(distance_name, vgg16=_VGG16.value)

    start = time.perf_counter()
    result = project_lib.project(g, target[None], space=_SPACE.value, num_steps=_STEPS.value,
                                 distance=distance, seed=_SEED.value,
                                 w_avg_samples=_W_AVG_SAMPLES.value,
                                 keep_trajectory=_SAVE_VIDEO.value)
    elapsed = time.perf_counter() - start

    from PIL import Image

    outdir = _OUTDIR.value
    os.makedirs(outdir, exist_ok=True)
    Image.fromarray(target).save(os.path.join(outdir, "target.png"))
    Image.fromarray(sample.to_uint8(result.images[0])).save(os.path.join(outdir, "proj.png"))
    np.savez(os.path.join(outdir, "projected_w.npz"),
             w=result.ws[:1],  # [1, num_ws, w_dim], as the official `w=projected_w.unsqueeze(0)`
             **{f"noise/{k}": v for k, v in result.noise_of(0).items()},
             dist=result.dist[:, 0], loss=result.loss[:, 0], space=np.str_(_SPACE.value),
             distance=np.str_(distance.name), network=np.str_(_NETWORK.value),
             target=np.str_(_TARGET.value), align=np.str_(_ALIGN.value),
             seed=np.int64(_SEED.value))
    if _SAVE_VIDEO.value:
        write_video(os.path.join(outdir, "proj.mp4"), g, result, target)
    print(f"projected {_TARGET.value} in {elapsed:.1f} s ({_STEPS.value} steps, "
          f"{distance.name} distance {result.dist[-1, 0]:.4f}); wrote target.png, proj.png, "
          f"projected_w.npz{', proj.mp4' if _SAVE_VIDEO.value else ''} to {outdir}")


if __name__ == "__main__":
    cli.quiet_dependency_logs()
    app.run(main, flags_parser=cli.parse_flags)
