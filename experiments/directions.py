r"""Fit latent directions (InterFaceGAN) for face attributes of a trained network.

    python -m experiments.directions --network=celeba32 \
        --attributes=smile,young,male,eyeglasses,yaw --num=10000 \
        --classifier=out/attr_faces32 --outdir=out/dirs [--spaces=w,z] [--keep=0.02]

Draws `--num` latents (`z = RandomState(--seed).randn`), renders them, scores every image
(CelebA attributes: the logits of our attribute classifier, `--classifier` or
$FLAXGAN_ATTRIBUTE_CLASSIFIER, a folder written by `python -m experiments.train_attributes`;
`yaw`: from the MTCNN landmarks of the generated face) and fits a linear SVM between the top and
bottom `--keep` of the scores in W (and Z with `--spaces=w,z`); see `flaxgan.edit`.

Writes to `--outdir`: `<attribute>.npz` per attribute in W (`<attribute>_z.npz` in Z;
`flaxgan.edit.load_direction`) and `directions.json` (the run and, per direction, the held-out
accuracy, the accuracy on every latent not fitted on, the score correlation, the counts). An
attribute that cannot be fitted (e.g. MTCNN finds too few faces for `yaw`) is named in the
summary and in one `error:` line (exit status 2) after the others are written. Bad input is
one line `error: ...` (exit status 2) before any image is rendered.
"""

from __future__ import annotations

import json
import math
import os
import time

from absl import app, flags, logging

from experiments import cli
from flaxgan import edit, pretrained, sample
from flaxgan.errors import InvalidArgument

_NETWORK = flags.DEFINE_string(
    "network", None, "Official .pkl snapshot, flaxgan export dir or bundled model name "
    "(flaxgan.sample.pretrained(): celeba32).", required=True)
_KEY = flags.DEFINE_string("key", "G_ema", "Which network of the snapshot to use.")
_ATTRIBUTES = flags.DEFINE_list(
    "attributes", "smile,young,male,eyeglasses,yaw",
    "Attributes: smile, young (age), male (gender), eyeglasses, yaw (pose) or any CelebA "
    "attribute name (Bangs, Blond_Hair, ...).")
_CLASSIFIER = flags.DEFINE_string(
    "classifier", None, "CelebA attribute classifier folder (experiments.train_attributes); "
    "default $FLAXGAN_ATTRIBUTE_CLASSIFIER, else the one bundled with --network (celeba32 "
    "carries one). Not needed for yaw alone.")
_NUM = flags.DEFINE_integer("num", edit.DEFAULT_NUM, "Latents sampled and labelled.")
_SPACES = flags.DEFINE_list("spaces", "w", "Latent spaces to fit in: w, z or w,z.")
_KEEP = flags.DEFINE_float("keep", edit.DEFAULT_KEEP,
                           "Fraction of the scored latents kept at each end (InterFaceGAN 0.02).")
_HOLDOUT = flags.DEFINE_float("holdout", edit.DEFAULT_HOLDOUT,
                              "Fraction of the kept latents held out for the accuracy.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latents (and the held-out split).")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi of the sampled w.")
_BATCH = flags.DEFINE_integer("batch_size", edit.LABEL_BATCH, "Images rendered at a time.")
_OUTDIR = flags.DEFINE_string("outdir", "out/dirs", "Output directory.")

CLASSIFIER_ENV = "FLAXGAN_ATTRIBUTE_CLASSIFIER"
MAX_NUM = 10_000_000
SUMMARY = "directions.json"


def check_flags() -> tuple[dict[str, str], list[str]]:
    """Flag values absl does not check; returns ({given name: canonical}, spaces)."""
    names = {a: edit.resolve_attribute(a) for a in dict.fromkeys(_ATTRIBUTES.value)}
    if not names:
        raise InvalidArgument("--attributes: name at least one attribute")
    canonical = list(names.values())
    doubled = sorted({c for c in canonical if canonical.count(c) > 1})
    if doubled:
        raise InvalidArgument(f"--attributes={','.join(_ATTRIBUTES.value)}: several names for "
                              f"{', '.join(doubled)}")
    spaces = list(dict.fromkeys(_SPACES.value))
    if not spaces or any(s not in edit.SPACES for s in spaces):
        raise InvalidArgument(f"--spaces={','.join(_SPACES.value)}: expected w, z or w,z")
    if not 1 <= _NUM.value <= MAX_NUM:
        raise InvalidArgument(f"--num={_NUM.value}: expected 1..{MAX_NUM}")
    if not 0 < _KEEP.value <= 0.5:
        raise InvalidArgument(f"--keep={_KEEP.value}: expected a fraction in (0, 0.5]")
    if not 0 <= _HOLDOUT.value < 1:
        raise InvalidArgument(f"--holdout={_HOLDOUT.value}: expected a fraction in [0, 1)")
    if not 0 <= _SEED.value < 2**32:
        raise InvalidArgument(f"--seed={_SEED.value}: expected 0..2**32-1")
    if not math.isfinite(_TRUNC.value) or abs(_TRUNC.value) > 2:
        raise InvalidArgument(f"--trunc={_TRUNC.value}: expected a finite psi in [-2, 2]")
    if _BATCH.value < 1:
        raise InvalidArgument(f"--batch_size={_BATCH.value}: expected >= 1")
    return names, spaces


def classifier_path(names: dict[str, str]) -> str | None:
    """`--classifier`, else the environment's, else the network's own (a bundled model's
    `attributes/`); None when only yaw is asked for."""
    if all(c == edit.YAW for c in names.values()):
        return None
    path = (_CLASSIFIER.value or os.environ.get(CLASSIFIER_ENV)
            or pretrained.matched_classifier(_NETWORK.value))
    if not path:
        celeba = [a for a, c in names.items() if c != edit.YAW]
        raise InvalidArgument(
            f"--attributes {','.join(celeba)} need the CelebA attribute classifier: pass "
            f"--classifier=DIR (or set ${CLASSIFIER_ENV}); train one with `python -m "
            "experiments.train_attributes --data=FACES --resolution=R --outdir=DIR`")
    return str(path)


def file_name(name: str, space: str) -> str:
    return f"{name}.npz" if space == "w" else f"{name}_z.npz"


def summary_row(direction: edit.Direction, file: str) -> dict:
    meta = direction.metadata
    return dict(file=file, attribute=direction.attribute, space=direction.space,
                accuracy=direction.accuracy, scale=direction.scale, offset=direction.offset,
                **{k: meta[k] for k in ("accuracy_all", "score_correlation", "positive_rate",
                                        "num_scored", "num_kept_per_side", "train_accuracy",
                                        "labeller")})


def format_table(rows: dict[str, dict], failed: dict[str, str]) -> str:
    lines = [f"{'direction':<16}{'space':>6}{'acc':>8}{'acc_all':>9}{'corr':>8}{'scored':>8}"]
    for key, r in rows.items():
        lines.append(f"{key:<16}{r['space']:>6}{r['accuracy']:>8.4f}{r['accuracy_all']:>9.4f}"
                     f"{r['score_correlation']:>8.3f}{r['num_scored']:>8d}")
    lines += [f"{key:<16} failed: {message}" for key, message in failed.items()]
    return "\n".join(lines)


@cli.reports_user_errors()
def main(argv: list[str]) -> None:
    del argv
    names, spaces = check_flags()
    cli.check_outdir(_OUTDIR.value)
    clf = classifier_path(names)
    g = sample.load(_NETWORK.value, key=_KEY.value)
    logging.info("Loaded %s: %dx%d, num_ws %d, w_dim %d", _NETWORK.value, g.img_resolution,
                 g.img_resolution, g.num_ws, g.w_dim)
    labellers = edit.make_labellers(list(names.values()), clf)

    start = time.perf_counter()
    samples = edit.sample_and_label(g, labellers, _NUM.value, seed=_SEED.value,
                                    truncation_psi=_TRUNC.value, batch_size=_BATCH.value)
    seconds = time.perf_counter() - start
    os.makedirs(_OUTDIR.value, exist_ok=True)
    rows, failed = {}, {}
    for name, canonical in names.items():
        for space in spaces:
            key = file_name(name, space)[:-len(".npz")]
            try:
                direction = edit.direction_from_samples(
                    samples, canonical, space, keep=_KEEP.value, holdout=_HOLDOUT.value,
                    seed=_SEED.value)
            except InvalidArgument as e:
                failed[key] = str(e)
                logging.warning("%s not fitted: %s", key, e)
                continue
            edit.save_direction(os.path.join(_OUTDIR.value, file_name(name, space)), direction)
            rows[key] = summary_row(direction, file_name(name, space))
    summary = dict(network=_NETWORK.value, fingerprint=samples.network, num=_NUM.value,
                   seed=_SEED.value, truncation_psi=_TRUNC.value, keep=_KEEP.value,
                   holdout=_HOLDOUT.value, classifier=clf, label_seconds=round(seconds, 1),
                   directions=rows, failed=failed)
    with open(os.path.join(_OUTDIR.value, SUMMARY), "w") as f:
        json.dump(summary, f, indent=1, allow_nan=True)
    print(format_table(rows, failed))
    print(f"labelled {_NUM.value} images in {seconds:.0f} s; wrote {len(rows)} directions and "
          f"{SUMMARY} to {_OUTDIR.value}")
    if failed:
        cli.fail(f"{len(failed)} of {len(failed) + len(rows)} directions not fitted: "
                 + "; ".join(failed.values()))


if __name__ == "__main__":
    cli.quiet_dependency_logs()
    app.run(main, flags_parser=cli.parse_flags)
