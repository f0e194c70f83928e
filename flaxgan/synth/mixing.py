"""Style-mixing auto-labelled datasets: m source seeds × n destination seeds.

The layer-range rule (StyleGAN paper, sec. 3.1, fig. 3): the mixed latent of source `s` and
destination `d` is `d`'s ws with the ws of the chosen layers (`sample.layer_indices`: coarse =
4²–8² by default) replaced by `s`'s. Coarse styles carry pose, face shape, gender, age and
glasses, so the labels of those attributes *propagate* from the source: every one of the m·n
mixed images gets the labels of its source (`propagate`). Whether they hold in the images is
what `flaxgan.synth.evaluate` measures with an attribute classifier.

Source labels come from a person (`read_labels_file`: one line per seed) or from our attribute
classifier (`edit.classifier_labeller`, logit > 0 = present). A source seed whose face is bad
(no face found, landmarks not sane, or a classifier label too close to its boundary) can be
replaced by the next usable seed (`replace_bad_seeds`: seed + 1, + 2, ...; the study's manual
step) instead of by hand.

    from flaxgan import sample, synth
    g = sample.load("celeba32")
    result = synth.make_mix_dataset(g, "out/mix", sources=range(10), dests=range(100, 150),
                                    labeller=synth.classifier_labels(g, ["Male", "Young"]))
    result.dataset   # out/mix/tfds/synthetic_faces/mix/1.0.0 (make_dataset reads it)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from flaxgan import edit, files, sample
from flaxgan.errors import InvalidArgument, UserError
from flaxgan.synth import quality
from flaxgan.synth.store import ChunkStore

__all__ = [
    "LabelTable",
    "MixResult",
    "make_mix_dataset",
    "mix_latents",
    "pairs",
    "propagate",
    "read_labels_file",
    "render",
    "replace_bad_seeds",
]

TRUE_VALUES, FALSE_VALUES = ("1", "+1", "yes", "true"), ("0", "-1", "no", "false")
MAX_SEED = 2**32 - 1  # np.random.RandomState's range (the official seed -> z)
DEFAULT_MAX_TRIES = 100
CHUNK = 64  # mixed images rendered and stored per chunk file


class LabelFileError(UserError, ValueError):
    """A labels file that is missing or malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """A person's labels: `names` and `{seed: bool [len(names)]}`.

    File format (`read_labels_file`): a header `seed NAME NAME ...`, then one line per seed,
    `SEED V V ...` with V in 1/+1/yes/true (present) or 0/-1/no/false (absent); `#` starts a
    comment. Names are CelebA attributes or `edit.ATTRIBUTE_ALIASES` (`male`, `glasses`, ...:
    stored under the CelebA name) or any other word (kept as written).
    """

    names: tuple[str, ...]
    rows: Mapping[int, np.ndarray]
    source: str = ""

    def labels(self, seeds: Sequence[int]) -> np.ndarray:
        """bool `[len(seeds), len(names)]`.

        Raises:
          LabelFileError: seeds without a line (named).
        """
        missing = [s for s in seeds if s not in self.rows]
        if missing:
            raise LabelFileError(f"{self.source}: no labels for seed(s) "
                                 f"{', '.join(map(str, missing[:5]))}"
                                 + (f" (and {len(missing) - 5} more)" if len(missing) > 5
                                    else ""))
        return np.stack([self.rows[s] for s in seeds]).astype(bool)


def _label_name(name: str) -> str:
    """A CelebA attribute or alias -> its CelebA name; any other word as written."""
    try:
        return edit.resolve_attribute(name)
    except InvalidArgument:
        return name


def read_labels_file(path: str | os.PathLike) -> LabelTable:
    """Reads a person's labels file (`LabelTable` gives the format).

    Raises:
      LabelFileError: one line naming the file (and line number) and what was expected.
    """
    path = os.fspath(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelFileError(f"{path}: labels file not readable ({type(e).__name__}: "
                             f"{getattr(e, 'strerror', None) or e})") from None
    lines = [(i, ln.split("#", 1)[0].split()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, parts) for i, parts in lines if parts]
    if not lines or lines[0][1][0].lower() != "seed" or len(lines[0][1]) < 2:
        raise LabelFileError(f"{path}: expected a header line 'seed NAME [NAME ...]' "
                             "(e.g. 'seed Male Eyeglasses')")
    names = tuple(_label_name(n) for n in lines[0][1][1:])
    if len(set(names)) != len(names):
        raise LabelFileError(f"{path}:{lines[0][0]}: a label name appears twice ({names})")
    rows: dict[int, np.ndarray] = {}
    for number, parts in lines[1:]:
        where = f"{path}:{number}"
        if len(parts) != len(names) + 1:
            raise LabelFileError(f"{where}: expected a seed and {len(names)} values "
                                 f"({' '.join(names)}), got {len(parts)} fields")
        if not parts[0].isdigit() or int(parts[0]) > MAX_SEED:
            raise LabelFileError(f"{where}: {parts[0]!r} is not a seed (an integer in "
                                 f"0..{MAX_SEED})")
        seed = int(parts[0])
        if seed in rows:
            raise LabelFileError(f"{where}: seed {seed} is labelled twice")
        values = [v.lower() for v in parts[1:]]
        bad = [v for v in values if v not in TRUE_VALUES + FALSE_VALUES]
        if bad:
            raise LabelFileError(f"{where}: value {bad[0]!r}; expected 1/-1/0, yes/no or "
                                 "true/false")
        rows[seed] = np.array([v in TRUE_VALUES for v in values])
    if not rows:
        raise LabelFileError(f"{path}: no labelled seeds after the header")
    return LabelTable(names, rows, path)


# ----------------------------------------------------------------------------- the rule


def pairs(m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and destination index of the m·n mixed images, source-major: image `i * n + j`
    mixes source `i` into destination `j` -> `(i [m * n], j [m * n])` int64."""
    return np.repeat(np.arange(m), n), np.tile(np.arange(n), m)


def mix_latents(source_ws: np.ndarray, dest_ws: np.ndarray, layers: Sequence[int]
                ) -> np.ndarray:
    """The layer-range rule, pair by pair: `dest_ws` with the rows `layers` taken from
    `source_ws`.

    Args:
      source_ws: float `[P, num_ws, w_dim]`.
      dest_ws: float `[P, num_ws, w_dim]`.
      layers: ws indices taken from the source.
    Returns:
      float32 `[P, num_ws, w_dim]`.
    """
    source_ws, dest_ws = np.asarray(source_ws), np.asarray(dest_ws)
    take = np.zeros(dest_ws.shape[1], bool)
    take[list(layers)] = True
    return np.where(take[None, :, None], source_ws, dest_ws).astype(np.float32)


def propagate(source_labels: np.ndarray, n: int) -> np.ndarray:
    """Labels of the m·n mixed images in `pairs` order (source-major): row `i * n + j` is
    `source_labels[i]`. `source_labels` `[m, A]` -> `[m * n, A]`."""
    return np.repeat(np.asarray(source_labels), n, axis=0)


def replace_bad_seeds(seeds: Sequence[int], is_good: Callable[[list[int]], np.ndarray], *,
                      max_tries: int = DEFAULT_MAX_TRIES, avoid: Sequence[int] = (),
                      allowed: Callable[[int], bool] | None = None
                      ) -> tuple[list[int], dict[int, int]]:
    """Replaces every seed that `is_good` rejects by the next usable one: seed + 1, + 2, ...

    Candidates already in use (the other seeds, `avoid`, earlier candidates) or not `allowed`
    (e.g. not in the labels file) are skipped without a check. All positions still bad are
    checked together, one batch per round.

    Args:
      seeds: the seeds, in order.
      is_good: seeds -> bool `[len(seeds)]`.
      max_tries: candidates checked per position at most.
      avoid: seeds never used (e.g. the destinations).
      allowed: candidate filter.
    Returns:
      `(seeds with replacements, {bad seed: its replacement})`.
    Raises:
      InvalidArgument: a position found no usable seed within `max_tries`.
    """
    seeds = [int(s) for s in seeds]
    original = list(seeds)
    used = set(seeds) | {int(s) for s in avoid}
    good = np.asarray(is_good(seeds), bool)
    bad = [p for p in range(len(seeds)) if not good[p]]
    cursor = {p: seeds[p] for p in bad}
    tries = dict.fromkeys(bad, 0)
    while bad:
        proposals = {}
        for p in bad:
            c = cursor[p] + 1
            while c in used or (allowed is not None and not allowed(c)):
                c += 1
            if c > MAX_SEED:
                raise InvalidArgument(f"source seed {original[p]}: no usable seed after it")
            cursor[p] = proposals[p] = c
            used.add(c)
            tries[p] += 1
        ok = np.asarray(is_good(list(proposals.values())), bool)
        for (p, c), fine in zip(proposals.items(), ok, strict=True):
            if fine:
                seeds[p] = c
        bad = [p for p, fine in zip(proposals, ok, strict=True) if not fine]
        spent = [p for p in bad if tries[p] >= max_tries]
        if spent:
            p = spent[0]
            raise InvalidArgument(f"source seed {original[p]}: no usable replacement within "
                                  f"{max_tries} tries ({original[p] + 1}..{cursor[p]} rejected)")
    return seeds, {o: s for o, s in zip(original, seeds, strict=True) if o != s}


# ----------------------------------------------------------------------------- the dataset


@dataclasses.dataclass(frozen=True)
class MixResult:
    """What `make_mix_dataset` wrote.

    Attributes:
      dataset: the TFDS dataset folder (`make_dataset` / `tfds.builder_from_directory`).
      grid: the overview grid PNG (top row sources, left column destinations).
      report: `mix.json` (settings, source labels, replacements).
      sources: the source seeds used (after replacements).
      replaced: `{bad seed: replacement}`.
      labels: bool `[m, A]` source labels; `names` their names.
    """

    dataset: str
    grid: str
    report: str
    sources: tuple[int, ...]
    replaced: Mapping[int, int]
    labels: np.ndarray
    names: tuple[str, ...]


def _check_seeds(seeds: Sequence[int], what: str) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InvalidArgument(f"no {what} seeds")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise InvalidArgument(f"{what} seeds must be in 0..{MAX_SEED}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InvalidArgument(f"{what} seeds repeat {', '.join(map(str, repeated[:5]))}")
    return seeds


def source_check(g: sample.LoadedGenerator, *, psi: float, noise_mode: str,
                 detector: quality.Detector | None, labeller: edit.Labeller | None,
                 min_face_score: float = 0.9, min_confidence: float = 0.0
                 ) -> Callable[[list[int]], np.ndarray]:
    """`seeds -> bool [N]`: the source's face is usable. With a detector: MTCNN finds a face of
    probability >= `min_face_score` with sane landmarks (`quality.landmark_sanity`); with a
    labeller: every label's |logit| >= `min_confidence` (not too close to the boundary)."""
    def is_good(seeds: list[int]) -> np.ndarray:
        images = _render_seeds(g, seeds, psi, noise_mode)
        good = np.ones(len(seeds), bool)
        if detector is not None:
            score, marks = quality.best_faces(images, detector)
            with np.errstate(invalid="ignore"):
                good &= (score >= min_face_score) & quality.landmark_sanity(marks,
                                                                            images.shape[1])
        if labeller is not None and min_confidence > 0:
            good &= np.all(np.abs(labeller.fn(images)) >= min_confidence, axis=1)
        return good
    return is_good


def render(g: sample.LoadedGenerator, ws: np.ndarray, noise_mode: str, seed: int) -> np.ndarray:
    """ws `[N, num_ws, w_dim]` -> uint8 `[N, H, W, C]` (noise `random` drawn from `seed`)."""
    return sample.to_uint8(sample.synthesize(g, ws, noise_mode=noise_mode, seed=seed))


def _render_seeds(g: sample.LoadedGenerator, seeds: Sequence[int], psi: float,
                  noise_mode: str) -> np.ndarray:
    return render(g, sample.mapping(g, sample.seeds_to_z(g, seeds), None, psi), noise_mode, 0)


def make_mix_dataset(
    g: sample.LoadedGenerator,
    outdir: str | os.PathLike,
    sources: Sequence[int],
    dests: Sequence[int],
    *,
    layers: str | Sequence[int] = "coarse",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    labels: LabelTable | None = None,
    labeller: edit.Labeller | None = None,
    replace_bad: bool = False,
    detector: quality.Detector | None = None,
    min_confidence: float = 0.0,
    max_tries: int = DEFAULT_MAX_TRIES,
    grid_dests: int = 16,
    chunk_size: int = CHUNK,
    overwrite: bool = False,
    progress: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> MixResult:
    """Writes the auto-labelled style-mixing dataset of `sources` × `dests` (module doc).

    Args:
      g: an unconditional generator.
      outdir: gets `work/` (resumable chunks), `tfds/` (the dataset), `grid.png`, `mix.json`.
      sources, dests: the m source and n destination seeds.
      layers: ws taken from the source (`sample.layer_indices`: coarse, middle, fine, all,
        or indices).
      truncation_psi, noise_mode: sampling (noise `random` is drawn per chunk).
      labels: a person's labels of the sources (`read_labels_file`), or
      labeller: our classifier's (`edit.classifier_labeller`; logit > 0 = present).
      replace_bad: replace a bad source seed by the next usable one (`replace_bad_seeds`,
        `source_check`; needs `detector` or a `min_confidence`); with `labels` the
        replacement must be labelled in the file too.
      detector: MTCNN's `detect_batch`, for `replace_bad`.
      min_confidence: `replace_bad` with a labeller: smallest |logit| of a usable source.
      max_tries: candidates per bad source.
      grid_dests: destination rows in `grid.png`.
      chunk_size: mixed images per chunk file.
      overwrite: discard an earlier job in `outdir`.
      settings: extra settings recorded (e.g. the network's name).
    Raises:
      InvalidArgument / LabelFileError: bad seeds, labels or options (one line).
    """
    from data_pipelines.builders.synthetic_faces import synthetic_faces as builder

    if (labels is None) == (labeller is None):
        raise InvalidArgument("give the sources' labels: a labels file or the attribute "
                              "classifier (exactly one)")
    if g.c_dim:
        raise InvalidArgument("style-mixing datasets need an unconditional generator "
                              f"(this one has c_dim={g.c_dim})")
    sources, dests = _check_seeds(sources, "source"), _check_seeds(dests, "destination")
    idx = sample.layer_indices(g, layers)
    replaced: dict[int, int] = {}
    if replace_bad:
        if detector is None and not (labeller is not None and min_confidence > 0):
            raise InvalidArgument("replacing bad sources needs the face detector or a minimum "
                                  "classifier confidence")
        check = source_check(g, psi=truncation_psi, noise_mode=noise_mode, detector=detector,
                             labeller=labeller, min_confidence=min_confidence)
        allowed = (lambda s: s in labels.rows) if labels is not None else None  # noqa: E731
        sources, replaced = replace_bad_seeds(sources, check, max_tries=max_tries, avoid=dests,
                                              allowed=allowed)
    if labels is not None:
        names, source_labels = labels.names, labels.labels(sources)
        label_source = f"file {labels.source}"
    else:
        names = labeller.names
        images = _render_seeds(g, sources, truncation_psi, noise_mode)
        source_labels = np.asarray(labeller.fn(images)) > 0
        label_source = labeller.source
    m, n = len(sources), len(dests)
    job = dict(settings or {}, network=edit.network_fingerprint(g), sources=sources,
               dests=dests, layers=list(idx), layer_range=str(layers),
               truncation_psi=float(truncation_psi), noise_mode=noise_mode,
               names=list(names), source_labels=source_labels.astype(int).tolist(),
               label_source=label_source, replaced={str(k): v for k, v in replaced.items()},
               chunk_size=int(chunk_size))
    outdir = os.fspath(outdir)
    if overwrite:
        shutil.rmtree(os.path.join(outdir, "tfds"), ignore_errors=True)
    store = ChunkStore(os.path.join(outdir, "work"), job, overwrite=overwrite)
    src_ws = sample.mapping(g, sample.seeds_to_z(g, sources), None, truncation_psi)
    dst_ws = sample.mapping(g, sample.seeds_to_z(g, dests), None, truncation_psi)
    ii, jj = pairs(m, n)
    all_labels = propagate(source_labels, n)
    count = -(-m * n // chunk_size)
    for k in tqdm(range(store.prefix(), count), desc="mix", unit="chunk", disable=not progress):
        sl = slice(k * chunk_size, (k + 1) * chunk_size)
        images = render(g, mix_latents(src_ws[ii[sl]], dst_ws[jj[sl]], idx), noise_mode, k)
        store.save(k, {"images": images, "source_seed": np.asarray(sources)[ii[sl]],
                       "dest_seed": np.asarray(dests)[jj[sl]], "labels": all_labels[sl]})

    def examples() -> Iterator[tuple[int, dict[str, Any]]]:
        key = 0
        for chunk in store.chunks(count):
            for image, s, d, lab in zip(chunk["images"], chunk["source_seed"],
                                        chunk["dest_seed"], chunk["labels"], strict=True):
                yield key, {"image": Image.fromarray(image[..., 0] if image.shape[-1] == 1
                                                     else image),
                            "attributes": {nm: bool(v) for nm, v in zip(names, lab,
                                                                        strict=True)},
                            "source_seed": int(s), "dest_seed": int(d),
                            "layers": np.asarray(idx, np.int32),
                            "psi": np.float32(truncation_psi)}
                key += 1

    layout = builder.Layout("mix", g.img_resolution, g.img_channels, attributes=tuple(names),
                            num_layers=len(idx))
    dataset = builder.build(os.path.join(outdir, "tfds"), "mix", layout, examples, store.settings)
    grid_path = os.path.join(outdir, "grid.png")
    _grid(g, store, count, sources, dests[:grid_dests], n, truncation_psi,
          noise_mode).save(grid_path)
    report = os.path.join(outdir, "mix.json")
    files.write_json(report, dict(store.settings, dataset=dataset, num_images=m * n,
                                  labels_by_seed={str(s): dict(zip(names, map(bool, lab),
                                                                   strict=True))
                                                  for s, lab in zip(sources, source_labels,
                                                                    strict=True)}), indent=1)
    return MixResult(dataset, grid_path, report, tuple(sources), replaced, source_labels,
                     tuple(names))


def _grid(g: sample.LoadedGenerator, store: ChunkStore, count: int, sources: Sequence[int],
          shown: Sequence[int], n: int, psi: float, noise_mode: str) -> Image.Image:
    """The overview (as `sample.style_mix`): top row the sources, left column the shown
    destinations, each cell the destination with the source's styles."""
    images = np.concatenate([ch["images"] for ch in store.chunks(count)])
    src = _render_seeds(g, sources, psi, noise_mode)
    dst = _render_seeds(g, shown, psi, noise_mode)
    cells: list[Any] = [None, *src]
    for j, tile in enumerate(dst):
        cells += [tile, *(images[i * n + j] for i in range(len(sources)))]
    as_pil = lambda a: Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)  # noqa: E731
    return sample.grid([None if c is None else as_pil(c) for c in cells], cols=len(sources) + 1)
