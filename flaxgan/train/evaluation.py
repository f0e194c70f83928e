"""Metric hook of the training loop: evaluates G_ema against the training data.

The real images come from the training dataset exactly as training sees them (same resolution,
no flips); the fakes from the EMA generator with z ~ N(0, I), ψ = 1 and random noise, the
official metric protocol. Results are appended to `workdir/metrics-eval.jsonl` in the format of
`experiments.eval` and returned as `{metric: value}` for best-checkpoint selection.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.metrics import features, inception, registry

__all__ = ["dataset_source", "generator_source", "evaluate"]


def dataset_source(data: Mapping[str, Any], max_images: int | None = None
                   ) -> features.ImageSource:
    """The training dataset (`config.data`) as a metrics `ImageSource`, in a fixed order."""
    from data_pipelines import input as data_input  # noqa: PLC0415 (TFDS import is slow)

    kwargs = dict(data_dir=data.get("data_dir"), resolution=data.get("resolution"),
                  folder_labels=data.get("folder_labels", False))
    meta = data_input.dataset_metadata(data["name"], data.get("split", "train"), **kwargs)
    count = meta.num_examples if max_images is None else min(max_images, meta.num_examples)

    def batches(batch_size: int):
        iterator = data_input.make_dataset(
            data["name"], data.get("split", "train"), batch_size, shuffle=False, num_epochs=1,
            drop_remainder=False, process_index=0, process_count=1, **kwargs)
        seen = 0
        for batch in iterator:
            images = np.asarray(batch["image"])[: count - seen]
            seen += images.shape[0]
            yield np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
            if seen >= count:
                return

    name = f"{os.path.basename(str(data['name']).rstrip('/'))}-{meta.resolution}-{count}"
    return features.ImageSource(name=name, num_images=count, batches=batches,
                                resolution=(meta.resolution, meta.resolution))


def generator_source(G, variables, c_dim: int, seed: int = 0) -> features.ImageSource:
    """Endless uint8 RGB samples of `G` (official protocol; conditional models get uniformly
    drawn classes)."""
    @functools.partial(jax.jit, static_argnums=1)
    def draw(key: jax.Array, n: int) -> jax.Array:
        k_z, k_c, k_noise = jax.random.split(key, 3)
        z = jax.random.normal(k_z, (n, G.z_dim))
        c = jax.nn.one_hot(jax.random.randint(k_c, (n,), 0, max(c_dim, 1)), c_dim)
        images = G.apply(variables, z, c, noise_mode="random", rngs={"noise": k_noise})
        images = jnp.clip(images * 127.5 + 128, 0, 255).astype(jnp.uint8)
        return jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images

    return features.generator_source(lambda key, n: np.asarray(draw(key, n)), seed=seed)


@functools.cache
def _inception_extractor() -> features.Extractor:
    return features.make_extractor(inception.inception_features, inception.load_params(),
                                   name="inception-2015-12-05")


def evaluate(metrics: Sequence[str], G, ema_variables, data: Mapping[str, Any], *,
             workdir: str | None = None, kimg: float | None = None, seed: int = 0,
             cache_dir: str | None = None) -> dict[str, float]:
    """Computes `metrics` (official names) for G_ema; `{name: first value}`.

    Dataset statistics are cached in `cache_dir` (default `~/.cache/flaxgan`)."""
    c_dim = int(G.c_dim)
    ctx = registry.MetricContext(real=dataset_source(data),
                                 fake=generator_source(G, ema_variables, c_dim, seed),
                                 inception=_inception_extractor(), progress=False, seed=seed,
                                 cache_dir=cache_dir)
    values = {}
    for name in metrics:
        start = time.time()
        result = registry.calc_metric(name, ctx)
        first = next(iter(result["results"].values()))
        values[name] = float(first)
        if workdir:
            record = dict(metric=name, value=float(first), num_images=result["num_images"],
                          seconds=round(time.time() - start, 3), kimg=kimg)
            with open(os.path.join(workdir, "metrics-eval.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
    return values
