"""Synthetic faces for augmentation: scored, filtered, rebalanced, resumable.

    from flaxgan import sample, synth
    g = sample.load("celeba32")
    scorers = synth.default_scorers("celeba32")           # MTCNN, D, matched classifier
    result = synth.export_faces(g, "out/synth", num=1000, truncation_psi=0.8, scorers=scorers,
                                target={"Male": 0.5, "Eyeglasses": 0.2}, png_dir="out/png")
    make_dataset(result.dataset, "train", 32)               # next to real data in training

Candidates are seeds in order (`seeds`, or `seed_start`, `seed_start + 1`, ...). Each chunk of
`chunk_size` candidates is rendered, scored (`quality`: MTCNN face and landmarks, D, realism,
attributes), filtered (`quality.decide`), accepted in order under the balance quotas
(`balance.accept`) and written as one chunk file (`store.ChunkStore`); the job stops once
`num` images are accepted or the candidates run out. An interrupted export run again with
the same arguments continues at the first missing chunk: the accepted images are those of an
uninterrupted run, none twice, none lost. At the end the accepted images become a TFDS
dataset (`data_pipelines.builders.synthetic_faces`, kind `export`), optionally a folder of
PNGs (`seed%06d.png`: an `image_mix` source next to real images), and `report.json`: filter
counts, attribute balance before (every candidate that passed the filters) and after
rebalancing, quotas and shortfall, score summaries.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from flaxgan import edit, files, sample
from flaxgan.errors import InvalidArgument
from flaxgan.synth import balance, quality
from flaxgan.synth.mixing import render
from flaxgan.synth.store import ChunkStore

__all__ = ["ExportResult", "Scorers", "export_faces", "load_scorers", "score_images",
           "write_pngs"]

DEFAULT_CHUNK = 64
REPORT = "report.json"


@dataclasses.dataclass(frozen=True)
class Scorers:
    """What scores the images; a missing one leaves its scores NaN (and never filters).

    Attributes:
      detector: images -> faces per image (`mtcnn.MTCNN().detect_batch`): `face_score`,
        `landmarks_ok`.
      discriminator: `quality.load_discriminator(...)`: `d_score`.
      features: uint8 `[N, H, W, 3]` -> `[N, D]` (the FID Inception extractor): `realism`
        against `real_features` `[M, D]`.
      labeller: attribute logits (`edit.classifier_labeller`): the `attributes` of every image,
        the balance report and rebalancing.
      real_name: what `real_features` are (recorded in the settings).
    """

    detector: quality.Detector | None = None
    discriminator: quality.Discriminator | None = None
    features: Callable[[np.ndarray], np.ndarray] | None = None
    real_features: np.ndarray | None = None
    labeller: edit.Labeller | None = None
    real_name: str = ""

    def __post_init__(self):
        if (self.features is None) != (self.real_features is None):
            raise InvalidArgument("the realism score needs both the feature network and the "
                                  "real features")

    @property
    def radii(self) -> np.ndarray | None:
        """Pruned k-NN radii of the real features (computed once)."""
        if self.real_features is None:
            return None
        if "_radii" not in self.__dict__:
            object.__setattr__(self, "_radii", quality.realism_radii(self.real_features))
        return self.__dict__["_radii"]

    def describe(self) -> dict[str, Any]:
        """Which scores run (the export's settings); `classifier` is the labeller's
        `edit.classifier_fingerprint` (`evaluate` recognises its own labels by it)."""
        return {"face": self.detector is not None, "d_score": self.discriminator is not None,
                "realism": self.real_name or (self.features is not None),
                "num_real": 0 if self.real_features is None else len(self.real_features),
                "attributes": list(self.labeller.names) if self.labeller else [],
                "labeller": self.labeller.source if self.labeller else "",
                "classifier": self.labeller.fingerprint if self.labeller else ""}


def score_images(images: np.ndarray, scorers: Scorers, c: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """`quality.SCORES` of uint8 images `[N, H, W, C]` (labels `c` for D) -> float32 `[N]`
    each, NaN where not computed."""
    n, side = len(images), images.shape[1]
    nan = np.full(n, np.nan, np.float32)
    out = {name: nan.copy() for name in quality.SCORES}
    out["std"] = quality.pixel_std(images)
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    if scorers.detector is not None:
        score, marks = quality.best_faces(rgb, scorers.detector)
        out["face_score"] = score
        out["landmarks_ok"] = np.where(np.isnan(score), np.nan,
                                       quality.landmark_sanity(marks, side)).astype(np.float32)
    if scorers.discriminator is not None:
        out["d_score"] = quality.d_scores(scorers.discriminator, images, c)
    if scorers.features is not None:
        out["realism"] = quality.realism_scores(scorers.features(rgb), scorers.real_features,
                                                scorers.radii)
    return out


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_faces` wrote: `dataset` (TFDS folder), `report` (JSON path), `png_dir`
    (or None), `num` images, `candidates` used, the report dict `summary`."""

    dataset: str
    report: str
    png_dir: str | None
    num: int
    candidates: int
    summary: Mapping[str, Any]


def _chunk(g: sample.LoadedGenerator, seeds: Sequence[int], index: int, *, psi: float,
           c: Any, noise_mode: str, scorers: Scorers) -> dict[str, np.ndarray]:
    """Renders and scores one chunk of candidates (everything but the acceptance)."""
    labels = sample.labels(g, c, len(seeds))
    ws = sample.mapping(g, sample.seeds_to_z(g, seeds), c, psi)
    images = render(g, ws, noise_mode, seed=index)
    scores = score_images(images, scorers, labels)
    if scorers.labeller is not None:
        logits = np.asarray(scorers.labeller.fn(images if images.shape[-1] == 3 else
                                                np.repeat(images, 3, axis=-1)), np.float32)
    else:
        logits = np.zeros([len(seeds), 0], np.float32)
    return {"seeds": np.asarray(seeds, np.int64), "images": images, "logits": logits,
            **{f"score_{k}": v for k, v in scores.items()}}


def _cells(logits: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    return balance.cells_of(np.asarray(logits)[:, list(columns)] > 0)


def export_faces(
    g: sample.LoadedGenerator,
    outdir: str | os.PathLike,
    num: int,
    *,
    seeds: Sequence[int] | None = None,
    seed_start: int = 0,
    max_candidates: int | None = None,
    truncation_psi: float = 1.0,
    c: int | None = None,
    noise_mode: str = "const",
    scorers: Scorers | None = None,
    thresholds: quality.Thresholds | None = None,
    target: Mapping[str, float] | None = None,
    report_attributes: Sequence[str] = balance.DEFAULT_REPORT,
    chunk_size: int = DEFAULT_CHUNK,
    png_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Exports `num` accepted faces (module doc).

    Args:
      g: the generator.
      outdir: work folder (`work/`), the dataset (`tfds/`) and `report.json`.
      num: images wanted.
      seeds: candidate seeds in order; default `seed_start, seed_start + 1, ...`.
      max_candidates: candidates tried at most (default: all of `seeds`, or `20 * num`).
      truncation_psi, c, noise_mode: sampling (`c`: class of a conditional generator).
      scorers: what scores the images (`Scorers`; default none: only `std`).
      thresholds: the artifact filters (default `quality.Thresholds()`).
      target: `{attribute: wanted fraction}` to rebalance to (needs `scorers.labeller`).
      report_attributes: attributes of the balance report (those the labeller scores).
      chunk_size: candidates per chunk file (the unit of resumption).
      png_dir: also write the accepted images there as `seed%06d.png`.
      overwrite: discard an earlier job in `outdir`.
      on_chunk: called with the number of chunks done after each one (progress hooks; tests
        interrupt the export from it).
      settings: extra settings recorded with the job (e.g. the network's name).
    Raises:
      InvalidArgument: bad arguments, or `outdir` holding a job with other settings.
    """
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise InvalidArgument(f"num must be an integer >= 1, got {num!r}")
    scorers = Scorers() if scorers is None else scorers
    thresholds = quality.Thresholds() if thresholds is None else thresholds
    if chunk_size < 1:
        raise InvalidArgument(f"chunk_size must be >= 1, got {chunk_size}")
    if seeds is None:
        total = 20 * num if max_candidates is None else max_candidates
        candidates: Sequence[int] = range(seed_start, seed_start + total)
    else:
        candidates = list(seeds)[:max_candidates]
        if len(set(candidates)) != len(candidates):
            raise InvalidArgument("the candidate seeds repeat a seed")
    names = tuple(scorers.labeller.names) if scorers.labeller else ()
    quotas = None
    if target:
        if not names:
            raise InvalidArgument("rebalancing needs the attribute classifier (no labeller)")
        balance.check_names(target, names)
        quotas = balance.Quotas.from_target(target, num)
    columns = [names.index(n) for n in (quotas.names if quotas else ())]
    sample.labels(g, c, 1)  # a class for a conditional generator, none otherwise
    job = dict(settings or {}, network=edit.network_fingerprint(g), num=int(num),
               candidates=[int(candidates[0]), int(candidates[-1]), len(candidates)]
               if seeds is None else [int(s) for s in candidates],
               truncation_psi=float(truncation_psi), c=c, noise_mode=noise_mode,
               scorers=scorers.describe(), thresholds=dataclasses.asdict(thresholds),
               target=dict(target or {}), chunk_size=int(chunk_size))
    if overwrite:
        shutil.rmtree(os.path.join(os.fspath(outdir), "tfds"), ignore_errors=True)
    store = ChunkStore(os.path.join(os.fspath(outdir), "work"), job, overwrite=overwrite)

    filled = np.zeros(len(quotas.counts) if quotas else 1, np.int64)
    done, accepted = store.prefix(), 0
    for chunk in store.chunks(done):
        taken = chunk["accepted"]
        accepted += int(taken.sum())
        if quotas:
            filled += np.bincount(_cells(chunk["logits"], columns)[taken],
                                  minlength=len(filled))
    bar = tqdm(total=num, initial=accepted, desc="export", unit="img", disable=not progress)
    k = done
    while accepted < num and k * chunk_size < len(candidates):
        part = _chunk(g, candidates[k * chunk_size:(k + 1) * chunk_size], k, psi=truncation_psi,
                      c=c, noise_mode=noise_mode, scorers=scorers)
        codes = quality.decide({n: part[f"score_{n}"] for n in quality.SCORES}, thresholds)
        cells = _cells(part["logits"], columns) if quotas else np.zeros(len(codes), np.int64)
        taken, filled = balance.accept(cells, codes == 0, filled,
                                       quotas.counts if quotas else None, num - accepted)
        part.update(reasons=codes, accepted=taken, images=part["images"][taken])
        store.save(k, part)
        accepted += int(taken.sum())
        bar.update(int(taken.sum()))
        k += 1
        if on_chunk is not None:
            on_chunk(k)
    bar.close()
    return _finish(g, store, outdir, k, num, names, report_attributes, quotas, filled,
                   truncation_psi, c, png_dir, overwrite)


def _finish(g, store: ChunkStore, outdir, count: int, num: int, names: tuple[str, ...],
            report_attributes: Sequence[str], quotas: balance.Quotas | None,
            filled: np.ndarray, psi: float, c: int | None, png_dir,
            overwrite: bool) -> ExportResult:
    """The dataset, PNGs and report of the first `count` chunks."""
    from data_pipelines.builders.synthetic_faces import synthetic_faces as builder

    chunks = list(store.chunks(count))
    seeds = np.concatenate([ch["seeds"] for ch in chunks])
    codes = np.concatenate([ch["reasons"] for ch in chunks])
    taken = np.concatenate([ch["accepted"] for ch in chunks])
    logits = np.concatenate([ch["logits"] for ch in chunks])
    scores = {n: np.concatenate([ch[f"score_{n}"] for ch in chunks]) for n in quality.SCORES}
    class_names = tuple(builder.class_names(g.c_dim))

    def examples():
        key = 0
        for ch in chunks:
            rows = np.flatnonzero(ch["accepted"])
            for image, row in zip(ch["images"], rows, strict=True):
                ex = {"image": Image.fromarray(image[..., 0] if image.shape[-1] == 1
                                               else image),
                      "seed": int(ch["seeds"][row]), "psi": np.float32(psi),
                      "attributes": {n: bool(ch["logits"][row, j] > 0)
                                     for j, n in enumerate(names)},
                      "scores": {n: np.float32(ch[f"score_{n}"][row]) for n in quality.SCORES}}
                if class_names:
                    ex["label"] = int(c)
                yield key, ex
                key += 1

    if not taken.any():
        raise InvalidArgument(f"no candidate passed the filters ({_counts_line(codes)}); "
                              "loosen the thresholds or draw more candidates")
    layout = builder.Layout("export", g.img_resolution, g.img_channels, attributes=names,
                            scores=quality.SCORES, class_names=class_names)
    dataset = builder.build(os.path.join(os.fspath(outdir), "tfds"), "export", layout, examples,
                            store.settings)
    if png_dir is not None:
        write_pngs(png_dir, (ch["images"] for ch in chunks), seeds[taken], replace=overwrite)
    present = logits > 0
    shown = [n for n in report_attributes if n in names] + [
        n for n in (quotas.names if quotas else ()) if n not in report_attributes]
    cols = [names.index(n) for n in shown]
    ok = codes == 0
    summary = {
        "num": int(taken.sum()), "wanted": int(num), "candidates": int(len(seeds)),
        "filters": quality.count_reasons(codes),
        "balance_passed": balance.fractions(present[ok][:, cols], shown),
        "balance_exported": balance.fractions(present[taken][:, cols], shown),
        "scores_exported": {n: quality.summary(v[taken]) for n, v in scores.items()},
        "scores_all": {n: quality.summary(v) for n, v in scores.items()},
        "dataset": dataset, "settings": store.settings,
    }
    if quotas:
        summary["quotas"] = {quotas.label(i): int(q) for i, q in enumerate(quotas.counts)}
        summary["shortfall"] = quotas.shortfall(filled)
    report = os.path.join(os.fspath(outdir), REPORT)
    files.write_json(report, summary, indent=1)
    return ExportResult(dataset, report, None if png_dir is None else os.fspath(png_dir),
                        int(taken.sum()), int(len(seeds)), summary)


def _counts_line(codes: np.ndarray) -> str:
    return ", ".join(f"{r} {n}" for r, n in quality.count_reasons(codes).items() if n)


def write_pngs(directory: str | os.PathLike, image_chunks, seeds: Sequence[int],
               replace: bool = False) -> int:
    """Writes `seed%06d.png` per image, atomically. Existing files are kept (re-running after
    an interruption completes the folder) unless `replace` (an overwritten export). Returns
    how many were written."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    seeds = iter(seeds)
    written = 0
    for chunk in image_chunks:
        for image in chunk:
            path = os.path.join(directory, f"seed{next(seeds):06d}.png")
            if os.path.exists(path) and not replace:
                continue
            with files.atomic_write(path) as f:
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                    f, format="PNG")
            written += 1
    return written


def load_scorers(network: str, *, face: bool = True, d_score: bool = True,
                 classifier: str | os.PathLike | None = None, real: Any = None,
                 inception: str | None = None, batch_size: int = 64) -> Scorers:
    """The usual scorers of a network's images.

    Args:
      network: what `sample.load` took (its D and matched classifier are looked up there).
      face: MTCNN (`face_score`, `landmarks_ok`).
      d_score: the network's D when it has one (`d_score`).
      classifier: the attribute classifier's folder (default: the network's matched one,
        `pretrained.matched_classifier`; none: no attributes).
      real: real images for the realism score (a `metrics.features.ImageSource`, e.g.
        `metrics.evaluation.real_source(...)`); their FID-Inception features are cached.
      inception: FID Inception weights (default: as the metrics find them).
      batch_size: images per feature step.
    """
    from flaxgan import pretrained

    detector = None
    if face:
        from data_pipelines.detection import mtcnn

        detector = mtcnn.MTCNN().detect_batch
    disc = quality.load_discriminator(network) if d_score else None
    folder = classifier if classifier is not None else pretrained.matched_classifier(network)
    labeller = None
    if folder is not None:
        clf = edit.load_classifier(folder)
        labeller = edit.classifier_labeller(clf, clf.attributes, batch_size=batch_size)
    feats = real_features = None
    if real is not None:
        from flaxgan.metrics import detectors, stats

        extractor = detectors.load_detectors(["fid50k_full"], inception=inception,
                                             batch_size=batch_size)["inception"]
        real_features = stats.dataset_features(real, extractor)
        feats = extractor
    return Scorers(detector=detector, discriminator=disc, features=feats,
                   real_features=real_features, labeller=labeller,
                   real_name=getattr(real, "name", "") if real is not None else "")
