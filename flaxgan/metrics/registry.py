"""Metric registry with the official names: ``calc_metric('fid50k_full', ctx)``.

Each evaluator takes a :class:`MetricContext` (the analogue of the official ``MetricOptions``:
real and generated image sources plus the sharded feature extractors) and returns named values,
e.g. ``{'fid50k_full': 4.78}``. Real-data statistics are cached on disk; generator samples never
are. Counts follow the official ``metric_main``:

=================  =====================================  ============  =========
name               statistic                              real          generated
=================  =====================================  ============  =========
``fid50k_full``    FID                                    all           50k
``fid50k``         FID                                    50k           50k
``fid10k``         FID (flaxgan; for frequent checks)     10k           10k
``fid1k_full``     FID (flaxgan; CPU-budget training      all           1k
                   curves, biased high: compare runs
                   only with each other)
``kid1k_full``     KID (flaxgan; unbiased, so small       all           1k
                   sets still track the curve)
``kid50k_full``    KID, 100 subsets of <= 1000            <= 1M         50k
``kid50k``         KID                                    50k           50k
``pr50k3_full``    precision/recall, k=3, VGG16 features  <= 200k       50k
``pr50k3``         precision/recall, k=3, VGG16 features  50k           50k
``is50k``          Inception Score, 10 splits             --            50k
``fid`` ``kid``    all images of two folders                all           all
``pr``             P/R k=3 on **Inception** features        all           all
=================  =====================================  ============  =========

``ppl_zfull`` ``ppl_wfull`` ``ppl_zend`` ``ppl_wend`` (face crop) and ``ppl2_wend`` (no crop):
50k samples, eps 1e-4, given ``ctx.generator`` and ``ctx.lpips``. ``ls`` (linear separability,
``ls_z`` and ``ls_w``): 200k samples, the most confident 100k per attribute, given
``ctx.generator`` and ``ctx.attribute_classifier`` (:mod:`flaxgan.metrics.ls`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flaxgan.errors import InvalidArgument
from flaxgan.metrics import fid as fid_lib
from flaxgan.metrics import kid as kid_lib
from flaxgan.metrics import ls as ls_lib
from flaxgan.metrics import ppl as ppl_lib
from flaxgan.metrics import pr as pr_lib
from flaxgan.metrics import stats
from flaxgan.metrics.features import Extractor, ImageSource, iterate_features

__all__ = [
    'MetricContext',
    'calc_metric',
    'higher_is_better',
    'is_valid_metric',
    'list_metrics',
    'register_metric',
]


@dataclasses.dataclass(frozen=True)
class MetricContext:
    """What an evaluator needs.

    Attributes:
      real: the dataset (cacheable source).
      fake: generated images: a :func:`features.generator_source` or a folder.
      inception: sharded extractor of 2048-d FID Inception features.
      inception_probs: sharded extractor of the 1008-way softmax (``is50k``), optional.
      vgg16: sharded extractor of the official VGG16 features (``pr50k3*``), optional.
      generator: :class:`ppl.LatentGenerator` for ``ppl_*``, optional.
      lpips: ``images [B, H, W, 3] in [0, 255] -> [B, F]`` LPIPS-VGG16 features (``ppl_*``).
      attribute_classifier: jittable ``images uint8 [B, H, W, 3] -> P(attribute present)
        [B, 40]`` (``ls``), e.g. ``attributes.load_classifier(path)``.
      num_gen: generated images (pairs for PPL) instead of each metric's official count, for
        quick looks; such values are not comparable with published ones.
      cache_dir: root of the statistics cache (default ``~/.cache/flaxgan``).
      use_cache: cache real (and folder) statistics on disk.
      progress: show tqdm bars.
      seed: seed of KID's subset draws.
      keep_generated_features: keep the generated images' features for the next metric of
        this context (FID then KID: one pass over the generator); False: FID streams their
        moments instead of holding every feature vector.
      generated_features: memo of the generated images' features within this context (not an
        argument; `dataclasses.replace` starts a new one), so that the metrics of one
        evaluation (FID and KID) share one pass over the generator.
    """

    real: ImageSource | None
    fake: ImageSource
    inception: Extractor | None = None
    inception_probs: Extractor | None = None
    vgg16: Extractor | None = None
    generator: ppl_lib.LatentGenerator | None = None
    lpips: Callable[[Any], Any] | None = None
    attribute_classifier: Callable[[Any], Any] | None = None
    num_gen: int | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = True
    seed: int = 0
    keep_generated_features: bool = True
    generated_features: dict[tuple[str, int | None], np.ndarray] = dataclasses.field(
        default_factory=dict, init=False, compare=False, repr=False)


# An evaluator returns (named values, image counts {'real': n, 'fake': n}).
Evaluator = Callable[[MetricContext], tuple[dict[str, float], dict[str, int]]]
_METRICS: dict[str, Evaluator] = {}
MIN_IMAGES = 2  # Per set: a covariance (FID) or an unbiased KID subset needs two.


def register_metric(name: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator adding an evaluator under ``name``."""
    def wrap(fn: Evaluator) -> Evaluator:
        _METRICS[name] = fn
        return fn
    return wrap


def list_metrics() -> list[str]:
    return sorted(_METRICS)


def is_valid_metric(name: str) -> bool:
    return name in _METRICS


def higher_is_better(name: str) -> bool:
    """For best-checkpoint selection: FID, KID, PPL, LS lower is better; P/R and IS higher."""
    return not name.startswith(('fid', 'kid', 'ppl', 'ls'))


def calc_metric(name: str, ctx: MetricContext) -> dict[str, Any]:
    """Runs one metric: ``{'metric', 'results': {name: value}, 'num_images', 'seconds'}``."""
    if name not in _METRICS:
        raise ValueError(f'unknown metric {name!r}; valid: {", ".join(list_metrics())}')
    start = time.time()
    results, counts = _METRICS[name](ctx)
    return dict(metric=name, results={k: float(v) for k, v in results.items()},
                num_images=counts, seconds=time.time() - start)


# ---------------------------------------------------------------------------------------------
# Shared steps.
# ---------------------------------------------------------------------------------------------


def _need(extractor: Extractor | None, what: str) -> Extractor:
    if extractor is None:
        raise ValueError(f'this metric needs the {what} detector; none was given')
    return extractor


def _need_real(ctx: MetricContext) -> ImageSource:
    if ctx.real is None:
        raise ValueError('this metric needs a real dataset (real source is None)')
    return ctx.real


def _moments(ctx: MetricContext, source: ImageSource, extract: Extractor,
             max_items: int | None) -> stats.Moments:
    return stats.dataset_moments(source, extract, max_items, ctx.cache_dir,
                                 ctx.use_cache, ctx.progress)


def _features(ctx: MetricContext, source: ImageSource, extract: Extractor,
              max_items: int | None) -> np.ndarray:
    return stats.dataset_features(source, extract, max_items, ctx.cache_dir,
                                  ctx.use_cache, ctx.progress)


def _fake_features(ctx: MetricContext, extract: Extractor, num_gen: int | None) -> np.ndarray:
    """Features of ``num_gen`` generated images, extracted once per context and extractor."""
    key = (extract.name, num_gen)
    if key not in ctx.generated_features:
        ctx.generated_features[key] = _features(ctx, ctx.fake, extract, num_gen)
    return ctx.generated_features[key]


def _enough(metric: str, ctx: MetricContext, counts: dict[str, int],
            minimum: int = MIN_IMAGES) -> dict[str, int]:
    """``counts`` when each set has ``minimum`` images (a covariance or KID subset: 2).

    Raises:
      InvalidArgument: one line with the counts (FID of 1 vs 1 image would read 0.0).
    """
    names = dict(real=ctx.real.name if ctx.real else '', fake=ctx.fake.name)
    short = [f'{k} {names[k]!r} has {n}' for k, n in counts.items() if n < minimum]
    if short:
        raise InvalidArgument(f'{metric} needs at least {minimum} images per set; '
                              f'{", ".join(short)}')
    return counts


def compute_fid(ctx: MetricContext, max_real: int | None, num_gen: int | None
                ) -> tuple[float, dict[str, int]]:
    """FID of ``num_gen`` generated vs ``max_real`` real images (``None`` = all)."""
    ex = _need(ctx.inception, 'FID Inception')
    real = _moments(ctx, _need_real(ctx), ex, max_real)
    if ctx.keep_generated_features or (ex.name, num_gen) in ctx.generated_features:
        gen_features = _fake_features(ctx, ex, num_gen)
        gen = stats.moments_update(stats.moments_init(gen_features.shape[1]), gen_features)
    else:
        gen = _moments(ctx, ctx.fake, ex, num_gen)
    counts = _enough('FID', ctx, dict(real=int(real.num_items), fake=int(gen.num_items)))
    return fid_lib.fid_from_moments(gen, real), counts


def compute_kid(ctx: MetricContext, max_real: int | None, num_gen: int | None,
                num_subsets: int, max_subset_size: int) -> tuple[float, dict[str, int]]:
    """KID of ``num_gen`` generated vs ``max_real`` real images."""
    ex = _need(ctx.inception, 'FID Inception')
    real = _features(ctx, _need_real(ctx), ex, max_real)
    gen = _fake_features(ctx, ex, num_gen)
    counts = _enough('KID', ctx, dict(real=len(real), fake=len(gen)))
    return kid_lib.kid(gen, real, num_subsets, max_subset_size, ctx.seed), counts


def compute_pr(ctx: MetricContext, extract: Extractor, max_real: int | None,
               num_gen: int | None, nhood_size: int) -> tuple[tuple[float, float], dict]:
    """Precision and recall with ``extract``'s features."""
    real = _features(ctx, _need_real(ctx), extract, max_real)
    gen = _features(ctx, ctx.fake, extract, num_gen)
    counts = _enough('precision/recall', ctx, dict(real=len(real), fake=len(gen)),
                     minimum=nhood_size + 1)
    return pr_lib.precision_recall(gen, real, nhood_size), counts


def compute_is(ctx: MetricContext, num_gen: int, num_splits: int) -> tuple[float, float, int]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` per split: (mean, std, num images)."""
    ex = _need(ctx.inception_probs, 'Inception softmax (NVIDIA inception-2015-12-05.pt)')
    probs = np.concatenate(list(iterate_features(ctx.fake, ex, num_gen, progress=ctx.progress)))
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits:(i + 1) * n // num_splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores)), n


# ---------------------------------------------------------------------------------------------
# The official metrics (metric_main.py) and folder-to-folder variants.
# ---------------------------------------------------------------------------------------------


def _gen_count(ctx: MetricContext, official: int | None) -> int | None:
    return official if ctx.num_gen is None else ctx.num_gen


def _fid_metric(name: str, max_real: int | None, num_gen: int | None) -> None:
    def evaluate(ctx):
        value, counts = compute_fid(ctx, max_real, _gen_count(ctx, num_gen))
        return {name: value}, counts
    register_metric(name)(evaluate)


def _kid_metric(name: str, max_real: int | None, num_gen: int | None) -> None:
    def evaluate(ctx):
        value, counts = compute_kid(ctx, max_real, _gen_count(ctx, num_gen), num_subsets=100,
                                    max_subset_size=1000)
        return {name: value}, counts
    register_metric(name)(evaluate)


def _pr_metric(name: str, max_real: int | None, num_gen: int | None, vgg: bool) -> None:
    def evaluate(ctx):
        extract = (_need(ctx.vgg16, 'VGG16 (official vgg16.pkl)') if vgg
                   else _need(ctx.inception, 'FID Inception'))
        (p, r), counts = compute_pr(ctx, extract, max_real, _gen_count(ctx, num_gen),
                                    nhood_size=3)
        return {f'{name}_precision': p, f'{name}_recall': r}, counts
    register_metric(name)(evaluate)


_fid_metric('fid50k_full', None, 50000)
_fid_metric('fid50k', 50000, 50000)
_fid_metric('fid10k', 10000, 10000)
_fid_metric('fid1k_full', None, 1000)
_fid_metric('fid', None, None)
_kid_metric('kid50k_full', 1000000, 50000)
_kid_metric('kid50k', 50000, 50000)
_kid_metric('kid1k_full', 1000000, 1000)
_kid_metric('kid', None, None)
_pr_metric('pr50k3_full', 200000, 50000, vgg=True)
_pr_metric('pr50k3', 50000, 50000, vgg=True)
_pr_metric('pr', None, None, vgg=False)


@register_metric('is50k')
def _is50k(ctx: MetricContext):
    mean, std, n = compute_is(ctx, num_gen=_gen_count(ctx, 50000), num_splits=10)
    return {'is50k_mean': mean, 'is50k_std': std}, dict(fake=n)


def _ppl_metric(name: str, space: str, sampling: str, crop: bool) -> None:
    def evaluate(ctx):
        if ctx.generator is None or ctx.lpips is None:
            raise ValueError(f'{name} needs ctx.generator (mapping/synthesis) and ctx.lpips '
                             '(LPIPS-VGG16 features)')
        g, n = ctx.generator, _gen_count(ctx, 50000)
        value = ppl_lib.ppl(g.mapping, g.synthesis, ctx.lpips, g.z_dim, num_samples=n,
                            epsilon=1e-4, space=space, sampling=sampling, crop=crop,
                            seed=ctx.seed, progress=ctx.progress, c_dim=g.c_dim,
                            class_probs=getattr(g, 'class_probs', None))
        return {name: value}, dict(fake=n)
    register_metric(name)(evaluate)


_ppl_metric('ppl_zfull', 'z', 'full', crop=True)
_ppl_metric('ppl_wfull', 'w', 'full', crop=True)
_ppl_metric('ppl_zend', 'z', 'end', crop=True)
_ppl_metric('ppl_wend', 'w', 'end', crop=True)
_ppl_metric('ppl2_wend', 'w', 'end', crop=False)


@register_metric('ls')
def _ls(ctx: MetricContext):
    if ctx.generator is None or ctx.attribute_classifier is None:
        raise ValueError('ls needs ctx.generator (mapping/synthesis) and '
                         'ctx.attribute_classifier (CelebA attribute probabilities)')
    n = _gen_count(ctx, 200000)
    values = ls_lib.linear_separability(ctx.generator, ctx.attribute_classifier,
                                        num_samples=n, num_keep=n // 2, seed=ctx.seed,
                                        progress=ctx.progress)
    return values, dict(fake=n)

