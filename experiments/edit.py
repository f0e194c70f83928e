r"""Edit faces along a latent direction: a strength sweep of seeds or of a projection.

    python -m experiments.edit --network=celeba32 --seeds=0-7 --direction=out/dirs/smile.npz \
        --strengths=-3,-1.5,0,1.5,3 --outdir=out/edit
    python -m experiments.edit --network=celeba32 --projected_w=out/proj/projected_w.npz \
        --direction=young --condition=male [--layers=coarse|middle|fine|0-3] [--save_video]

`--direction` (and each `--condition`) is a file of `experiments.directions`, or a bare name
looked up as `<--directions_dir>/<name>.npz`. `--condition` removes those directions'
components first (`flaxgan.edit.condition`: e.g. age without gender). Strengths are in
standard deviations of the sampled latents along the direction (`flaxgan.edit`); `--layers`
edits only those ws (W directions; the others keep their w). A Z direction edits the seeds'
z, then maps them.

Writes to `--outdir`: `grid.png` (a row per latent, a column per strength), one PNG per latent
and strength (`seed0003_+1.50.png`, `proj_-3.00.png`), `edited_w.npz` (`w`
`[S, N, num_ws, w_dim]`, `strengths`, `names`) and with `--save_video` `edit.mp4` (the latents
side by side, the strength sweeping min -> max -> min; H.264 through the ffmpeg that
`imageio-ffmpeg` ships). A projection's optimised noise maps (`noise/...` in the file of
`experiments.project`) are used when present. Bad input is one line `error: ...` (exit status
2) before anything is written.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from absl import app, flags, logging

from experiments import cli
from flaxgan import edit, sample
from flaxgan import project as project_lib
from flaxgan.errors import InvalidArgument

_NETWORK = flags.DEFINE_string(
    "network", None, "Official .pkl snapshot, flaxgan export dir or bundled model name "
    "(flaxgan.sample.pretrained(): celeba32).", required=True)
_KEY = flags.DEFINE_string("key", "G_ema", "Which network of the snapshot to use.")
_SEEDS = flags.DEFINE_string("seeds", None, "Seeds to edit, e.g. '0-7,12'.")
_PROJECTED_W = flags.DEFINE_string("projected_w", None,
                                   "projected_w.npz to edit (key w: [1, num_ws, w_dim]).")
_DIRECTION = flags.DEFINE_string("direction", None, "Direction file, or a name in "
                                 "--directions_dir.", required=True)
_DIRECTIONS_DIR = flags.DEFINE_string("directions_dir", "out/dirs",
                                      "Where bare direction names are looked up.")
_CONDITION = flags.DEFINE_list("condition", [], "Directions to remove from --direction.")
_STRENGTHS = flags.DEFINE_list("strengths", "-3,-1.5,0,1.5,3",
                               "Edit strengths (standard deviations), one column each.")
_LAYERS = flags.DEFINE_string("layers", "all", "Edited ws: all, coarse, middle, fine or "
                              "indices such as '0-3,5'.")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi of the seeds.")
_NOISE_MODE = flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"],
                                "Noise mode.")
_SAVE_VIDEO = flags.DEFINE_boolean("save_video", False, "Also write edit.mp4 (a sweep).")
_VIDEO_FRAMES = flags.DEFINE_integer("video_frames", 48, "Frames of the video's loop.")
_FPS = flags.DEFINE_integer("fps", 24, "Video frames per second.")
_OUTDIR = flags.DEFINE_string("outdir", "out/edit", "Output directory.")

MAX_SEEDS = 256  # rows of one grid
MAX_SEED = 2**32 - 1  # np.random.RandomState's range (the official seed -> z)
MAX_STRENGTH = 100.0  # standard deviations; beyond this W is far outside the data
MAX_STRENGTHS = 64
MAX_VIDEO_FRAMES = 10_000


def parse_seeds(spec: str) -> list[int]:
    """`--seeds` as at most `MAX_SEEDS` seeds in RandomState's range."""
    seeds = cli.parse_range(spec, limit=MAX_SEEDS)
    if max(seeds) > MAX_SEED:
        raise InvalidArgument(f"--seeds={spec}: seeds must be at most 2**32 - 1 = {MAX_SEED}")
    return seeds


def parse_strengths(values: list[str]) -> np.ndarray:
    """`--strengths` as float32 `[S]`: finite, |s| <= `MAX_STRENGTH`, at most `MAX_STRENGTHS`."""
    try:
        s = np.array([float(v) for v in values], np.float32)
    except ValueError:
        raise InvalidArgument(f"--strengths={','.join(values)}: expected numbers such as "
                              "-3,-1.5,0,1.5,3") from None
    if not 1 <= len(s) <= MAX_STRENGTHS or not np.all(np.isfinite(s)) \
            or np.abs(s).max() > MAX_STRENGTH:
        raise InvalidArgument(f"--strengths={','.join(values)}: expected 1..{MAX_STRENGTHS} "
                              f"finite numbers within +-{MAX_STRENGTH:g}")
    return s


def parse_layers(spec: str) -> str | list[int]:
    """`--layers`: a range name or indices (checked against the network later)."""
    if spec in ("all", "coarse", "middle", "fine"):
        return spec
    try:
        return cli.parse_range(spec, limit=1024)
    except InvalidArgument as e:
        raise InvalidArgument(f"--layers={spec}: expected all, coarse, middle, fine or indices "
                              f"({e})") from None


def direction_path(spec: str, flag: str) -> str:
    """A direction file: `spec` itself, else `<--directions_dir>/<spec>.npz` for a bare name."""
    if os.path.isfile(spec):
        return spec
    named = os.path.join(_DIRECTIONS_DIR.value, f"{spec}.npz")
    if os.sep not in spec and not spec.endswith(".npz") and os.path.isfile(named):
        return named
    raise InvalidArgument(f"{flag}={spec}: no such file (nor {named}); fit directions with "
                          "`python -m experiments.directions`")


def read_directions() -> edit.Direction:
    """`--direction` with the `--condition` directions removed."""
    direction = edit.load_direction(direction_path(_DIRECTION.value, "--direction"))
    others = [edit.load_direction(direction_path(c, "--condition")) for c in _CONDITION.value]
    return edit.condition(direction, *others)


def read_projected_w(path: str, g: sample.LoadedGenerator
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`(ws [N, num_ws, w_dim], noise maps name -> [H, W])` of a projected_w.npz (key `w`:
    the official `[1, num_ws, w_dim]`, or `[num_ws, w_dim]`); noise only for one w."""
    if not os.path.isfile(path):
        raise InvalidArgument(f"--projected_w={path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "w" not in f.files:
                raise InvalidArgument(f"{path}: no key 'w' (expected the projector's "
                                      f"projected_w.npz; has {sorted(f.files)[:5]})")
            ws = np.asarray(f["w"], np.float32)
            noise = {k[len("noise/"):]: f[k] for k in f.files if k.startswith("noise/")}
    except InvalidArgument:
        raise
    except Exception as e:  # zip / npy errors of many kinds
        raise InvalidArgument(f"{path}: not a readable .npz ({type(e).__name__})") from None
    ws = ws[None] if ws.ndim == 2 else ws
    if ws.ndim != 3 or ws.shape[1:] != (g.num_ws, g.w_dim) or not len(ws):
        raise InvalidArgument(f"{path}: w has shape {list(ws.shape)}; this network needs "
                              f"[1, {g.num_ws}, {g.w_dim}]")
    if not np.all(np.isfinite(ws)):
        raise InvalidArgument(f"{path}: w is not finite")
    return ws, (noise if len(ws) == 1 and g.has_noise else {})


def with_projection_noise(g: sample.LoadedGenerator, noise: dict[str, np.ndarray]
                          ) -> sample.LoadedGenerator:
    """`g` rendering with the projection's noise maps (as its proj.png), when they fit."""
    if not noise:
        return g
    try:
        return project_lib.with_noise(g, noise)
    except (KeyError, TypeError, ValueError):
        logging.warning("the projection's noise maps do not fit this network; using its own")
        return g


def check_direction(direction: edit.Direction, g: sample.LoadedGenerator,
                    layers: str | list[int], seeds: bool) -> None:
    dim = g.w_dim if direction.space == "w" else g.z_dim
    if direction.dim != dim:
        raise InvalidArgument(f"--direction: a {direction.dim}-D {direction.space.upper()} "
                              f"direction; this network's {direction.space.upper()} is {dim}-D")
    if direction.space == "z" and not seeds:
        raise InvalidArgument("--direction is a Z direction: it edits --seeds (a projection "
                              "has no z); fit a W one (the default of experiments.directions)")
    if direction.space == "z" and layers != "all":
        raise InvalidArgument("--layers applies to W directions; this one is in Z")
    try:
        sample.layer_indices(g, layers)
    except InvalidArgument as e:
        raise InvalidArgument(f"--layers={_LAYERS.value}: {e}") from None
    if direction.network and direction.network != edit.network_fingerprint(g):
        logging.warning("%s was fitted on another network (fingerprint %s...); its edits may "
                        "mean nothing here", direction.attribute, direction.network[:12])


@cli.reports_user_errors()
def main(argv: list[str]) -> None:
    del argv
    if (_SEEDS.value is None) == (_PROJECTED_W.value is None):
        raise InvalidArgument("pass exactly one of --seeds and --projected_w")
    seeds = parse_seeds(_SEEDS.value) if _SEEDS.value is not None else None
    strengths = parse_strengths(_STRENGTHS.value)
    layers = parse_layers(_LAYERS.value)
    if not 2 <= _VIDEO_FRAMES.value <= MAX_VIDEO_FRAMES or not 1 <= _FPS.value <= 120:
        raise InvalidArgument(f"--video_frames={_VIDEO_FRAMES.value} --fps={_FPS.value}: "
                              f"expected 2..{MAX_VIDEO_FRAMES} frames at 1..120 fps")
    if not math.isfinite(_TRUNC.value) or abs(_TRUNC.value) > 2:
        raise InvalidArgument(f"--trunc={_TRUNC.value}: expected a finite psi in [-2, 2]")
    cli.check_outdir(_OUTDIR.value)
    direction = read_directions()
    g = sample.load(_NETWORK.value, key=_KEY.value)
    check_direction(direction, g, layers, seeds is not None)

    if seeds is not None:
        names = [f"seed{s:04d}" for s in seeds]
        z = sample.seeds_to_z(g, seeds)
        if direction.space == "z":
            def ws_at(s: np.ndarray) -> np.ndarray:
                moved = edit.apply_z(z, direction, s)
                mapped = sample.mapping(g, moved.reshape(-1, g.z_dim), None, _TRUNC.value)
                return mapped.reshape(len(s), len(z), g.num_ws, g.w_dim)
        else:
            ws = sample.mapping(g, z, None, _TRUNC.value)
            ws_at = functools.partial(edit.apply, ws, direction, layers=layers, g=g)
    else:
        ws, noise = read_projected_w(_PROJECTED_W.value, g)
        names = ["proj"] if len(ws) == 1 else [f"proj{i:02d}" for i in range(len(ws))]
        g = with_projection_noise(g, noise)
        ws_at = functools.partial(edit.apply, ws, direction, layers=layers, g=g)
    edited = ws_at(strengths)  # [S, N, num_ws, w_dim]
    images = sample.to_uint8(edit.render(g, edited, _NOISE_MODE.value))

    outdir = _OUTDIR.value
    os.makedirs(outdir, exist_ok=True)
    edit.sweep_grid(images).save(os.path.join(outdir, "grid.png"))
    for s, row in zip(strengths, images, strict=True):
        for name, image in zip(names, sample.to_pil(row), strict=True):
            image.save(os.path.join(outdir, f"{name}_{s:+.2f}.png"))
    np.savez(os.path.join(outdir, "edited_w.npz"), w=edited, strengths=strengths,
             names=np.array(names), direction=np.str_(direction.attribute))
    if _SAVE_VIDEO.value:
        edit.save_sweep_video(os.path.join(outdir, "edit.mp4"), g, ws_at,
                              edit.video_strengths(strengths, _VIDEO_FRAMES.value),
                              fps=_FPS.value, noise_mode=_NOISE_MODE.value)
    print(f"edited {len(names)} latents along {direction.attribute} at strengths "
          f"{', '.join(f'{s:g}' for s in strengths)}; wrote grid.png, "
          f"{len(names) * len(strengths)} PNGs, edited_w.npz"
          f"{', edit.mp4' if _SAVE_VIDEO.value else ''} to {outdir}")


if __name__ == "__main__":
    cli.quiet_dependency_logs()
    app.run(main, flags_parser=cli.parse_flags)
