r"""Synthetic face datasets: style-mixing auto-labelled sets, augmentation exports, evaluation.

    # m × n style-mixing set, coarse styles from the sources, labels by our classifier (or
    # --labels=FILE: a person's, one line per seed); bad sources replaced by seed + 1, ...
    python -m experiments.synth_dataset mix --network=celeba32 --sources=0-9 --dests=100-199 \
        --attributes=Male,Young,Eyeglasses --replace_bad --outdir=out/mix_celeba32

    # 1000 faces for augmentation, scored, filtered, rebalanced; resumable (run it again)
    python -m experiments.synth_dataset export --network=celeba32 --num=1000 --trunc=0.8 \
        --balance=Male=0.5 --real=celeba32.py --min_realism=1 --png_dir=out/synth/png \
        --outdir=out/synth

    # the study's table: a classifier against several labelled datasets
    python -m experiments.synth_dataset evaluate --network=celeba32 \
        --data=out/mix_a/tfds/synthetic_faces/mix/1.0.0,out/mix_b/...,celeba32.py@train[-500:] \
        --names=G_a,G_b,real --out=out/eval.json --table=out/eval.md

`mix` writes `OUTDIR/tfds/synthetic_faces/mix/1.0.0` (TFDS, ArrayRecord: `image`,
`attributes`, `source_seed`, `dest_seed`, `layers`, `psi`), `grid.png` and `mix.json`.
`export` writes `OUTDIR/tfds/synthetic_faces/export/1.0.0` (`image`, `seed`, `attributes`,
`scores`, `psi`, `label` for conditional networks), `report.json` (filter counts, balance before
and after, quotas, shortfall, score summaries) and, with `--png_dir`, `seed%06d.png` files (an
`image_mix` source). `evaluate` prints the table and writes the JSON report; an export
evaluated with the very classifier that labelled it is marked `*` in the table and
`circular: true` in the report (100% by construction, not a measurement). Datasets:
`data_pipelines.input.make_dataset(FOLDER, "train", ...)`. A `NAME.py[:variant]` for `--real`
or `--data` is a training config (bare names in experiments/configs/): its data section (folder,
crop box, split). The attribute classifier is `--classifier` or the network's matched one.
Bad input is one line `error: ...` (exit status 2). Library: `flaxgan.synth`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from absl import app, flags, logging

from experiments import cli
from flaxgan.errors import InvalidArgument

COMMANDS = ("mix", "export", "evaluate")
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"
MAX_SEEDS = 1_000_000  # seeds in one list
MAX_SEED = 2**32 - 1  # np.random.RandomState's range (the official seed -> z)

_NETWORK = flags.DEFINE_string("network", None, "Generator: official .pkl, flaxgan export or "
                               "bundled name (celeba32).")
_OUTDIR = flags.DEFINE_string("outdir", None, "Output folder (mix, export).")
_TRUNC = flags.DEFINE_float("trunc", 1.0, "Truncation psi.")
_NOISE_MODE = flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"], "Noise mode.")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "Attribute classifier folder (default: the "
                                  "network's matched one).")
_ATTRIBUTES = flags.DEFINE_list("attributes", ["Male", "Young", "Eyeglasses"],
                                "mix: labels taken from the classifier; evaluate: labels "
                                "evaluated (default there: all the classifier predicts).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard an earlier job in --outdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bars.")
# mix
_SOURCES = flags.DEFINE_string("sources", None, "mix: source seeds (labels), e.g. 0-9.")
_DESTS = flags.DEFINE_string("dests", None, "mix: destination seeds, e.g. 100-199.")
_LAYERS = flags.DEFINE_string("layers", "coarse", "mix: ws taken from the source: coarse, "
                              "middle, fine, all or indices (0-3).")
_LABELS = flags.DEFINE_string("labels", None, "mix: a person's labels file ('seed NAME ...' "
                              "header, one line per seed) instead of the classifier.")
_REPLACE_BAD = flags.DEFINE_bool("replace_bad", False, "mix: replace a source without a sane "
                                 "face (or below --min_confidence) by seed + 1, + 2, ...")
_MIN_CONFIDENCE = flags.DEFINE_float("min_confidence", 0.0, "mix --replace_bad: smallest "
                                     "|logit| of a classifier label.")
_MAX_TRIES = flags.DEFINE_integer("max_tries", 100, "mix: replacement seeds tried per source.")
_GRID_ROWS = flags.DEFINE_integer("grid_rows", 16, "mix: destinations shown in grid.png.")
# export
_NUM = flags.DEFINE_integer("num", None, "export: images wanted.")
_SEEDS = flags.DEFINE_string("seeds", None, "export: candidate seeds (default: --seed_start, "
                             "+1, ...).")
_SEED_START = flags.DEFINE_integer("seed_start", 0, "export: first candidate seed.")
_MAX_CANDIDATES = flags.DEFINE_integer("max_candidates", None, "export: candidates tried at "
                                       "most (default 20 x --num).")
_CLASS = flags.DEFINE_integer("class", None, "export: class index (conditional networks).")
_BALANCE = flags.DEFINE_string("balance", None, "export: target fractions, e.g. "
                               "Male=0.5,Eyeglasses=0.3 (rejection sampling).")
_REQUIRE_FACE = flags.DEFINE_bool("require_face", True, "export: drop images without an MTCNN "
                                  "face (and check its score and landmarks).")
_MIN_FACE_SCORE = flags.DEFINE_float("min_face_score", 0.9, "export: MTCNN probability.")
_CHECK_LANDMARKS = flags.DEFINE_bool("check_landmarks", True, "export: landmark sanity.")
_MIN_STD = flags.DEFINE_float("min_std", 2.0, "export: pixel std (0-255) of a flat image.")
_D_SCORE = flags.DEFINE_bool("d_score", True, "export: score with the network's D if it has "
                             "one.")
_MIN_D_SCORE = flags.DEFINE_float("min_d_score", None, "export: drop images D scores below.")
_REAL = flags.DEFINE_string("real", None, "export: real images for the realism score (folder, "
                            "TFDS name or NAME.py config).")
_REAL_SPLIT = flags.DEFINE_string("real_split", None, "export: split of --real.")
_MIN_REALISM = flags.DEFINE_float("min_realism", None, "export: drop images of lower realism "
                                  "score (1 = edge of the real manifold).")
_INCEPTION = flags.DEFINE_string("inception", None, "FID Inception weights (realism).")
_PNG_DIR = flags.DEFINE_string("png_dir", None, "export: also write seed%06d.png files here.")
_CHUNK = flags.DEFINE_integer("chunk_size", 64, "export/mix: images per resumable chunk.")
# evaluate
_DATA = flags.DEFINE_list("data", None, "evaluate: labelled datasets (TFDS folders or names, "
                          "CelebA image folders, NAME.py configs), each optionally @SPLIT.")
_NAMES = flags.DEFINE_list("names", None, "evaluate: their table columns.")
_SPLIT = flags.DEFINE_string("split", None, "evaluate: split of every --data without @SPLIT "
                             "(slices allowed; default train, a config's own split).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory for names.")
_ATTR_FILE = flags.DEFINE_string("attr_file", None, "evaluate: attribute table of image folders.")
_CROP_BOX = flags.DEFINE_list("crop_box", None, "evaluate: face box of image folders, "
                              "left,top,right,bottom fractions.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", None, "evaluate: images per dataset at most.")
_NO_FACE = flags.DEFINE_bool("no_face", True, "evaluate: count images without an MTCNN face.")
_OUT = flags.DEFINE_string("out", None, "evaluate: JSON report path.")
_TABLE = flags.DEFINE_string("table", None, "evaluate: Markdown table path.")


# ----------------------------------------------------------------------------- helpers


def seeds(spec: str | None, flag: str) -> list[int]:
    """A seed list flag (`0-9,12`): required, each seed in RandomState's range."""
    if not spec:
        raise InvalidArgument(f"--{flag} is required (seeds, e.g. 0-9)")
    try:
        values = cli.parse_range(spec, limit=MAX_SEEDS)
    except InvalidArgument as e:
        raise InvalidArgument(f"--{flag}: {e}") from None
    if max(values) > MAX_SEED:
        raise InvalidArgument(f"--{flag}={spec}: seeds must be at most 2**32 - 1")
    return values


def layers(spec: str) -> str | list[int]:
    """`--layers`: a name or an index list."""
    return cli.parse_range(spec) if spec[:1].isdigit() else spec


def config_data(spec: str, split: str | None = None) -> dict[str, Any] | None:
    """The data section of a training config `NAME.py[:variant]` (bare names in
    experiments/configs/), `split` replaced when given; None when `spec` is not a config."""
    path, _, variant = spec.partition(":")
    if not path.endswith(".py"):
        return None
    file = pathlib.Path(path) if os.path.exists(path) else CONFIG_DIR / path
    if not file.is_file():
        raise InvalidArgument(f"{spec}: no such config (looked in {CONFIG_DIR} too)")
    module_spec = importlib.util.spec_from_file_location(f"_synth_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    data = dict(module.get_config(variant or None).data.to_dict())
    if split:
        data["split"] = split
    return data


def _checked(value: float | None, flag: str) -> None:
    if value is not None and not math.isfinite(value):
        raise InvalidArgument(f"--{flag}={value}: expected a finite number")


def _check_psi(psi: float) -> None:
    if not math.isfinite(psi) or abs(psi) > 2:
        raise InvalidArgument(f"--trunc={psi}: expected a finite psi in [-2, 2] (1 = no "
                              "truncation, 0.5-0.8 typical)")


# ----------------------------------------------------------------------------- commands


def run_mix() -> None:
    from flaxgan import edit, sample, synth
    from flaxgan.pretrained import matched_classifier

    if not _NETWORK.value or not _OUTDIR.value:
        raise InvalidArgument("mix needs --network and --outdir")
    sources, dests = seeds(_SOURCES.value, "sources"), seeds(_DESTS.value, "dests")
    cli.check_outdir(_OUTDIR.value)
    _check_psi(_TRUNC.value)
    table = synth.read_labels_file(_LABELS.value) if _LABELS.value else None
    g = sample.load(_NETWORK.value)
    labeller = None
    if table is None or (_REPLACE_BAD.value and _MIN_CONFIDENCE.value > 0):
        folder = _CLASSIFIER.value or matched_classifier(_NETWORK.value)
        if folder is None:
            raise InvalidArgument(f"{_NETWORK.value} has no matched attribute classifier: pass "
                                  "--classifier=DIR or --labels=FILE")
        labeller = edit.classifier_labeller(folder, _ATTRIBUTES.value) if table is None else None
    detector = None
    if _REPLACE_BAD.value:
        from data_pipelines.detection import mtcnn

        detector = mtcnn.MTCNN().detect_batch
    result = synth.make_mix_dataset(
        g, _OUTDIR.value, sources, dests, layers=layers(_LAYERS.value),
        truncation_psi=_TRUNC.value, noise_mode=_NOISE_MODE.value, labels=table,
        labeller=labeller, replace_bad=_REPLACE_BAD.value, detector=detector,
        min_confidence=_MIN_CONFIDENCE.value, max_tries=_MAX_TRIES.value,
        grid_dests=_GRID_ROWS.value, chunk_size=_CHUNK.value, overwrite=_OVERWRITE.value,
        progress=_PROGRESS.value, settings={"network_name": _NETWORK.value})
    for bad, new in result.replaced.items():
        print(f"replaced source seed {bad} by {new}")
    print(f"wrote {len(result.sources) * len(dests)} images: {result.dataset}")
    print(f"grid: {result.grid}\nreport: {result.report}")


def _real_source(spec: str, split: str | None) -> Any:
    from flaxgan.metrics import evaluation

    section = config_data(spec, split)
    if section is not None:
        return evaluation.dataset_source(section)
    if split:
        return evaluation.dataset_source({"name": spec, "split": split,
                                          "data_dir": _DATA_DIR.value})
    cli.check_dataset({"name": spec, "data_dir": _DATA_DIR.value}, "--data_dir")
    return evaluation.real_source(spec, data_dir=_DATA_DIR.value)


def run_export() -> None:
    from flaxgan import sample, synth

    if not _NETWORK.value or not _OUTDIR.value:
        raise InvalidArgument("export needs --network and --outdir")
    if _NUM.value is None or _NUM.value < 1:
        raise InvalidArgument(f"--num={_NUM.value}: expected the number of images wanted (>= 1)")
    candidates = seeds(_SEEDS.value, "seeds") if _SEEDS.value else None
    for value, flag in ((_MIN_D_SCORE.value, "min_d_score"), (_MIN_REALISM.value, "min_realism"),
                        (_MIN_FACE_SCORE.value, "min_face_score"), (_MIN_STD.value, "min_std")):
        _checked(value, flag)
    if _MIN_REALISM.value is not None and not _REAL.value:
        raise InvalidArgument("--min_realism needs --real (the real images it compares with)")
    target = synth.balance.parse_target(_BALANCE.value) if _BALANCE.value else None
    cli.check_outdir(_OUTDIR.value)
    _check_psi(_TRUNC.value)
    g = sample.load(_NETWORK.value)
    sample.labels(g, _CLASS.value, 1)
    real = _real_source(_REAL.value, _REAL_SPLIT.value) if _REAL.value else None
    scorers = synth.load_scorers(_NETWORK.value, face=_REQUIRE_FACE.value,
                                 d_score=_D_SCORE.value, classifier=_CLASSIFIER.value,
                                 real=real, inception=_INCEPTION.value)
    if _MIN_D_SCORE.value is not None and scorers.discriminator is None:
        raise InvalidArgument(f"--min_d_score: {_NETWORK.value} has no discriminator D")
    thresholds = synth.quality.Thresholds(
        min_std=_MIN_STD.value, require_face=_REQUIRE_FACE.value,
        min_face_score=_MIN_FACE_SCORE.value, check_landmarks=_CHECK_LANDMARKS.value,
        min_d_score=_MIN_D_SCORE.value, min_realism=_MIN_REALISM.value)
    result = synth.export_faces(
        g, _OUTDIR.value, _NUM.value, seeds=candidates, seed_start=_SEED_START.value,
        max_candidates=_MAX_CANDIDATES.value, truncation_psi=_TRUNC.value, c=_CLASS.value,
        noise_mode=_NOISE_MODE.value, scorers=scorers, thresholds=thresholds, target=target,
        chunk_size=_CHUNK.value, png_dir=_PNG_DIR.value, overwrite=_OVERWRITE.value,
        progress=_PROGRESS.value, settings={"network_name": _NETWORK.value})
    s = result.summary
    dropped = ", ".join(f"{k} {v}" for k, v in s["filters"].items() if k != "kept" and v)
    print(f"exported {result.num} of {s['wanted']} images from {result.candidates} candidates"
          + (f" (dropped: {dropped})" if dropped else ""))
    if s.get("shortfall"):
        print(f"shortfall (candidates ran out): {s['shortfall']}")
    print(f"balance: {json.dumps({k: round(v, 3) for k, v in s['balance_exported'].items()})}")
    print(f"dataset: {result.dataset}\nreport: {result.report}")


def run_evaluate() -> None:
    from flaxgan import synth
    from flaxgan.pretrained import matched_classifier

    if not _DATA.value:
        raise InvalidArgument("evaluate needs --data (one or more labelled datasets)")
    if _NAMES.value and len(_NAMES.value) != len(_DATA.value):
        raise InvalidArgument(f"--names gives {len(_NAMES.value)} names for "
                              f"{len(_DATA.value)} datasets")
    classifier = _CLASSIFIER.value or (matched_classifier(_NETWORK.value) if _NETWORK.value
                                       else None)
    if classifier is None:
        raise InvalidArgument("evaluate needs the attribute classifier: --classifier=DIR, or "
                              "--network=NAME with a matched classifier (celeba32)")
    crop_box = None
    if _CROP_BOX.value:
        try:
            crop_box = [float(v) for v in _CROP_BOX.value]
        except ValueError:
            raise InvalidArgument(f"--crop_box={','.join(_CROP_BOX.value)}: expected four "
                                  "numbers") from None
    detector = None
    if _NO_FACE.value:
        from data_pipelines.detection import mtcnn

        detector = mtcnn.MTCNN().detect_batch
    reports = []
    for i, item in enumerate(_DATA.value):
        name = _NAMES.value[i] if _NAMES.value else None
        spec, _, split = item.partition("@")
        split = split or _SPLIT.value
        section = config_data(spec)
        kwargs = dict(name=name, split=split or "train", data_dir=_DATA_DIR.value,
                      attr_file=_ATTR_FILE.value, crop_box=crop_box,
                      max_images=_MAX_IMAGES.value)
        if section is not None:
            kwargs.update(name=name or pathlib.Path(spec.partition(":")[0]).stem,
                          crop_box=section.get("crop_box"),
                          split=split or section.get("split", "train"))
            spec = section["name"]
        data = synth.evaluate.open_labelled(spec, **kwargs)
        attributes = _ATTRIBUTES.value if flags.FLAGS["attributes"].present else None
        reports.append(synth.evaluate.evaluate_dataset(data, classifier, detector=detector,
                                                       attributes=attributes,
                                                       progress=_PROGRESS.value))
    text = synth.evaluate.table(reports)
    print(text, end="")
    from flaxgan import files

    if _OUT.value:
        files.write_json(_OUT.value, {"classifier": str(classifier), "datasets": reports},
                         indent=1)
    if _TABLE.value:
        files.write_text(_TABLE.value, text)


@cli.reports_user_errors()
def main(argv: Sequence[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise InvalidArgument(f"expected one command, {' | '.join(COMMANDS)}: python -m "
                              "experiments.synth_dataset COMMAND --flags (see the module doc)")
    cli.quiet_dependency_logs()
    logging.info("synth_dataset %s", argv[1])
    {"mix": run_mix, "export": run_export, "evaluate": run_evaluate}[argv[1]]()


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
